"""The docker image of a Codabench bundle against the profile's grader versions: the image
an export names, what is known about any image, a Dockerfile with exactly those versions."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from subkit.profile import Profile

DEFAULT_IMAGE = "codalab/codalab-legacy:py3"  # the v2 unpacker's default docker_image
# images known to have no TensorFlow: Codabench's defaults (py37, py3, py39, ...)
NO_TENSORFLOW = ("codalab/codalab-legacy", "codalab/codalab:")
CHECK_IMAGE = ("docker run --rm {image} python3 -c \"import sys, tensorflow, keras, numpy; "
               "print(sys.version.split()[0], tensorflow.__version__, keras.__version__, "
               "numpy.__version__)\"")
def _pins_text(prof: Profile) -> str:
    g = prof.grader
    return ", ".join(f"{k} {g.get(k)}" for k in ("python", "tensorflow", "keras", "numpy"))


def default_image(prof: Profile) -> str:
    """The image an exported bundle names: the official image of the profile's TensorFlow
    (``tensorflow/tensorflow:2.17.0``), which exists for every release; Codabench's own
    default has no TensorFlow."""
    tf = prof.grader.get("tensorflow")
    return f"tensorflow/tensorflow:{tf}" if tf else DEFAULT_IMAGE


def image_note(image: str, prof: Profile) -> str | None:
    """What is known about ``image`` against the profile's grader versions: a warning when
    it cannot run them, a reminder to check when subkit cannot see inside it."""
    pins = _pins_text(prof)
    check = CHECK_IMAGE.format(image=image)
    if image.startswith(NO_TENSORFLOW):
        return (f"docker image {image} has no TensorFlow: on Codabench every submission "
                f"would fail to import it; name an image with {pins} (`subkit bundle export` "
                "writes one, docker/Dockerfile)")
    m = re.fullmatch(r"(?:docker\.io/)?tensorflow/tensorflow:(\d+(?:\.\d+)*)(?:-\S+)?", image)
    tf = str(prof.grader.get("tensorflow") or "")
    if m and tf and m.group(1) != tf:
        return (f"docker image {image} has tensorflow {m.group(1)}, not the grader's {tf}: "
                f"name tensorflow/tensorflow:{tf} or an image with {pins}")
    if m:
        return (f"docker image {image} has tensorflow {tf}; its Python, Keras and numpy are "
                f"whatever that image ships, not necessarily {pins}: check with `{check}`, or "
                "build docker/Dockerfile for exactly those")
    return (f"subkit cannot see inside docker image {image}: check that it has {pins} with "
            f"`{check}`")


def dockerfile(prof: Profile) -> str:
    """A Dockerfile for an image with exactly the profile's grader versions."""
    from subkit.grader.environment import pins, requirements

    reqs = " ".join(requirements(pins(prof)))
    return (f"# The grader's versions of profile {prof.name}, for competition.yaml's "
            f"docker_image:\n#   docker build -t YOU/{prof.name}:grader docker/ && docker push "
            f"YOU/{prof.name}:grader\n#   then set docker_image: YOU/{prof.name}:grader\n"
            f"FROM python:{prof.grader.get('python')}-slim\n"
            f"RUN pip install --no-cache-dir {reqs}\n")


