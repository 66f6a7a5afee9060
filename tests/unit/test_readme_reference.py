"""The README's inventory reference is the JSON Schema's, not a copy drifting from it."""

from pathlib import Path

from sliceops.docs import BEGIN, END, reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_inventory_reference_matches_the_schema():
    text = README.read_text()
    shown = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert shown == reference().strip(), "README is stale: run python -m sliceops.docs and paste it"
