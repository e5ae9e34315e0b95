"""Make the collection importable as ansible_collections.fastdowntime.postgresql."""
import os
import sys

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'fastdowntime', 'postgresql')
if not os.path.lexists(LINK):  # not in git: the Makefile's venv target makes it too
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    try:
        os.symlink(os.path.join('..', '..', '..'), LINK)
    except FileExistsError:
        pass
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
