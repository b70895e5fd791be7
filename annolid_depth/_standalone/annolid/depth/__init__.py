"""`annolid.depth` where Annolid is not installed: this package under the name Annolid's depth
feature has, so its documented imports and commands work as written.

`annolid_depth_standalone.pth` appends this file's grandparent folder to `sys.path`. There
`annolid` is a namespace portion (a folder without `__init__.py`), so wherever Annolid is
installed its regular `annolid` package is found first and this folder is never read: Annolid's
`annolid.depth` stays Annolid's. Here, `annolid.depth.<name>` is `annolid_depth.<name>`, the
same module object (never a second copy with its own classes and caches), also for
`python -m annolid.depth.<name>`.
"""
import importlib
import importlib.abc
import importlib.util
import sys

import annolid_depth

__all__ = annolid_depth.__all__
__version__ = annolid_depth.__version__


def __getattr__(name):
    return getattr(annolid_depth, name)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `annolid.depth.<name>` as `annolid_depth.<name>`."""

    prefix = __name__ + "."

    def __init__(self):
        self.specs = {}  # a loaded module's own spec, put back after the import system replaced it

    def target(self, name: str) -> str:
        return "annolid_depth." + name[len(self.prefix) :]

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(self.prefix):
            return None
        real = importlib.util.find_spec(self.target(name))
        if real is None:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=real.submodule_search_locations is not None)

    def create_module(self, spec):
        module = importlib.import_module(self.target(spec.name))
        self.specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.specs.pop(module.__spec__.name)

    def get_code(self, name):  # python -m annolid.depth.<name> runs annolid_depth.<name>
        real = importlib.util.find_spec(self.target(name))
        return real.loader.get_code(real.name)


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
