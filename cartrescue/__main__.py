"""``python -m cartrescue``: the console script's command, for a venv whose ``bin`` is not on
``PATH`` (a cron line that names only the interpreter, a container's ``python -m``). It enters
through :func:`cartrescue.entry.main` as the script does, so a stop during the imports ends the
same way."""

from cartrescue.entry import main

if __name__ == "__main__":
    main()
