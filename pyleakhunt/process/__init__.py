"""Looking at a process from outside: ``/proc`` (`proc`), ELF files
(`elf`), and which CPython a process or a file runs (`cpython`).

Read-only, standard library only.  Shared by ``pyleakhunt attach`` and
the census; neither imports the other.
"""
