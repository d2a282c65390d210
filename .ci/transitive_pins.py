"""Print upper bounds for the packages galcat pulls in but does not name itself.

``make test-min`` resolves each direct dependency to its lowest allowed version. The
packages those pull in may not be newer than the pins in constraints.txt, which the main
install has just installed from the same registry: a release that the resolver saw but
the installer could not yet fetch (pyvo 1.10.0) once broke CI. Older versions stay
allowed, as the lowest direct versions may need them.
"""

import re
import sys
import tomllib
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


def main(pyproject: str, constraints: str) -> None:
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    direct = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        direct += extra
    direct_names = {requirement_name(r) for r in direct}
    for line in Path(constraints).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            if requirement_name(line) not in direct_names:
                print(line.replace("==", "<=", 1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
