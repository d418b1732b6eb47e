"""Message tags: all in hpcapp/parallel/tags.py, all distinct, and no other tag anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hpcapp.parallel.tags import all_tags

PACKAGE = Path(__file__).resolve().parent.parent / "hpcapp"
TAG_KEYWORDS = ("tag", "sendtag", "recvtag")


def test_tags_are_distinct_and_within_what_mpi_guarantees():
    tags = all_tags()
    assert len(tags) >= 10 and all(type(tag) is int for tag in tags.values())
    assert len(set(tags.values())) == len(tags), tags
    assert all(0 <= tag <= 32767 for tag in tags.values())  # MPI_TAG_UB is at least 32767


def tag_uses(path: Path) -> list[str]:
    """Return the tags ``path`` passes to MPI calls or defines, as text: ``Tag.X`` or others."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found += [ast.unparse(k.value) for k in node.keywords if k.arg in TAG_KEYWORDS]
        elif isinstance(node, ast.Assign | ast.AnnAssign) and "TAG" in ast.unparse(node).upper():
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"defines {ast.unparse(t)}" for t in targets if "TAG" in ast.unparse(t)]
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p.name != "tags.py"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_every_message_uses_a_tag_from_the_one_module(path):
    # A module below the runtime (io/reader.py) is handed its tag as the parameter ``tag``.
    stray = [use for use in tag_uses(path) if not use.startswith("Tag.") and use != "tag"]
    assert not stray, f"{path.name}: tags not taken from hpcapp.parallel.tags: {stray}"


def test_the_checker_finds_a_literal_tag_and_a_module_constant(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("_TAG_X = 7\n\ndef f(comm):\n    comm.send(1, dest=0, tag=7501)\n")
    assert tag_uses(path) == ["defines _TAG_X", "7501"]
