"""The one build step pyproject.toml cannot declare: `annolid_depth_standalone.pth`.

The file goes beside the package in site-packages and appends one folder to `sys.path`:
`annolid_depth/_standalone`, which provides `annolid.depth` where Annolid is not installed
(where it is, Annolid's own `annolid` package is found first and that folder is never read).
A wheel names the folder relative to site-packages; an editable install names the source
tree's. pip installs and uninstalls the file with the rest of the package.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "annolid_depth_standalone.pth"
STANDALONE = os.path.join("annolid_depth", "_standalone")


class BuildWithStandalone(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # the editable wheel is made of what lands in the install folder
            folder = self.get_finalized_command("install").install_lib
            line = os.path.join(os.path.dirname(os.path.abspath(__file__)), STANDALONE)
        else:
            folder, line = self.build_lib, STANDALONE
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, PTH), "w", encoding="utf-8") as stream:
            stream.write(line + "\n")


setup(cmdclass={"build_py": BuildWithStandalone})
