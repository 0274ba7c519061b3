"""``python -m rawbpf``: the command-line interface."""

from rawbpf.cli import main

if __name__ == "__main__":
    main()
