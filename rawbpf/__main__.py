"""``python -m rawbpf``: the command-line interface."""

from rawbpf.cli import main

__tier__ = "kernel"

if __name__ == "__main__":
    main()
