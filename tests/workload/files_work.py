#!/usr/bin/env python3
"""File changes for the monitor to record, run through a symlink named ``claude`` (so it is tracked).

    claude scripted DIR     # relative paths, dirfds, '..', a symlinked dir, every op, reads
    claude storm DIR N      # creates and writes N files, prints the manifest
    claude repeat DIR N     # opens one file for appending N times

The manifest (JSON on stdout) lists every change as [op, path, path2, ret] with absolute paths, the reads
that must be recorded (sensitive) and those that must not. Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any, Dict, List, Optional


def scripted(d: str) -> Dict[str, Any]:
    real = os.path.realpath(d)
    os.chdir(d)
    ops: List[List[Any]] = []

    def add(op: str, path: str, path2: Optional[str] = None, ret: int = 0) -> None:
        ops.append([op, os.path.join(real, path) if not path.startswith("/") else path,
                    None if path2 is None else path2[len("/as-written:"):] if path2.startswith("/as-written:")
                    else path2 if path2.startswith("/") else os.path.join(real, path2),
                    ret])

    with open("a.txt", "w") as f:  # openat(AT_FDCWD, "a.txt", O_CREAT|O_TRUNC|O_WRONLY)
        f.write("one\n")
    add("create", "a.txt")
    with open("a.txt", "a") as f:  # O_APPEND on an existing file
        f.write("two\n")
    add("write", "a.txt")
    os.truncate("a.txt", 2)  # truncate(2)
    add("truncate", "a.txt")
    os.mkdir("sub", 0o750)
    add("mkdir", "sub")
    os.mkdir("sub/inner")
    add("mkdir", "sub/inner")
    dfd = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open("b.txt", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640, dir_fd=dfd)  # openat(dirfd)
    os.write(fd, b"b")
    os.ftruncate(fd, 0)  # ftruncate(2): the path comes from the open file
    os.close(fd)
    add("create", "sub/b.txt")
    add("truncate", "sub/b.txt")
    os.rename("sub/b.txt", "sub/inner/../c.txt")  # '..' in the target
    add("rename", "sub/b.txt", "sub/c.txt")
    os.chmod("c.txt", 0o600, dir_fd=dfd)  # fchmodat(dirfd)
    add("chmod", "sub/c.txt")
    os.chown("sub/c.txt", os.getuid(), os.getgid())
    add("chown", "sub/c.txt")
    os.link("sub/c.txt", "d.txt")
    add("link", "d.txt", "sub/c.txt")
    os.symlink("sub", "linkdir")
    add("symlink", "linkdir", "/as-written:sub")
    with open("linkdir/e.txt", "w") as f:  # through the symlinked dir: the file's own path is under sub/
        f.write("e")
    add("create", "sub/e.txt")
    os.unlink("e.txt", dir_fd=dfd)  # unlinkat(dirfd)
    add("delete", "sub/e.txt")
    os.chdir("sub/inner")
    with open("../../f.txt", "x") as f:  # relative to a cwd that changed, with '..'
        f.write("f")
    add("create", "f.txt")
    os.chdir(real)
    os.rmdir("sub/inner")
    add("rmdir", "sub/inner")
    os.unlink("d.txt")
    add("delete", "d.txt")
    try:
        os.open("missing/g.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    except FileNotFoundError:
        add("create", "missing/g.txt", ret=-errno.ENOENT)
    os.close(dfd)

    # reads: a watched one (**/.env), one of /etc/shadow, and an ordinary one that must not be recorded
    os.mkdir("proj")
    add("mkdir", "proj")
    with os.fdopen(os.open("proj/.env", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "w") as f:
        f.write("TOKEN=x\n")
    add("create", "proj/.env")
    with open("proj/.env") as f:
        f.read()
    with open("/etc/shadow") as f:
        f.read(1)
    with open("a.txt") as f:
        f.read()
    with open("proj/not-env.txt", "w") as f:
        f.write("x")
    add("create", "proj/not-env.txt")
    with open("proj/not-env.txt") as f:
        f.read()
    denied = []
    if os.getuid() == 0:  # a read refused for lack of permission is recorded too (with its -EACCES)
        # of a file this run made (0600, root's): the host's own files may not refuse anyone where the root
        # file system is shared into a guest that checks no permissions (virtme-ng's 9p root, access=any)
        secret = os.path.join(real, "proj/.env")
        child = os.fork()
        if child == 0:
            os.setuid(65534)
            try:
                open(secret).close()
            except PermissionError:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(child, 0)
        if os.WEXITSTATUS(status) != 0:
            raise SystemExit(f"uid 65534 could read {secret} (0600, root's): this file system checks no"
                             " permissions")
        denied.append([child, secret, -errno.EACCES])
    return {"pid": os.getpid(), "ops": ops, "sensitive": [os.path.join(real, "proj/.env"), "/etc/shadow"],
            "ordinary": [os.path.join(real, "a.txt"), os.path.join(real, "proj/not-env.txt")],
            "denied": denied}


def storm(d: str, n: int) -> Dict[str, Any]:
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"f{i:05d}.o"), "w") as f:
            f.write("x")
    return {"pid": os.getpid(), "made": n}


def repeat(d: str, n: int) -> Dict[str, Any]:
    path = os.path.join(os.path.realpath(d), "log.txt")
    for i in range(n):
        with open(path, "a") as f:
            f.write(f"{i}\n")
    return {"pid": os.getpid(), "path": path, "made": n}


def main(argv: List[str]) -> int:
    mode = argv[1]
    if mode == "scripted":
        out = scripted(argv[2])
    elif mode == "storm":
        out = storm(argv[2], int(argv[3]))
    elif mode == "repeat":
        out = repeat(argv[2], int(argv[3]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
