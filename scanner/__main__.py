"""``python -m scanner`` is ``snapfim``."""

from scanner.cli import main

if __name__ == "__main__":
    main()
