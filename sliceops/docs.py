"""Render the inventory reference (README section) from the JSON Schema, its single source.

    python -m sliceops.docs        # prints the markdown table the README holds
"""

from __future__ import annotations

import json

from sliceops.inventory import schema

BEGIN, END = "<!-- inventory-reference:begin -->", "<!-- inventory-reference:end -->"


def _rows(props: dict, prefix: str, required: list[str]):
    for key, spec in props.items():
        path = f"{prefix}{key}"
        if spec.get("type") == "object" and isinstance(spec.get("additionalProperties"), dict):
            # a mapping of named entries (hosts.<name>): one row for it, then the entry's keys
            entry = spec["additionalProperties"]
            yield path, "mapping", "", spec.get("description", "")
            yield from _rows(entry["properties"], f"{path}.<name>.", entry.get("required", []))
        elif spec.get("type") == "object":
            yield path, "mapping", "", spec.get("description", "")
            yield from _rows(spec["properties"], f"{path}.", spec.get("required", []))
        elif spec.get("type") == "array" and spec.get("items", {}).get("type") == "object":
            yield path, "list", "", spec.get("description", "")
            yield from _rows(spec["items"]["properties"], f"{path}[].", spec["items"].get("required", []))
        else:
            kind = spec.get("type", "")
            if isinstance(kind, list):
                kind = " or ".join(kind)
            if "enum" in spec:
                kind += " (" + " / ".join(str(v) for v in spec["enum"]) + ")"
            if key in required:
                default = "required"
            elif "default" in spec:
                default = json.dumps(spec["default"])
            else:
                default = "derived" if "Default:" in spec.get("description", "") else "optional"
            yield path, kind, default, spec.get("description", "")


def reference() -> str:
    s = schema()
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for path, kind, default, desc in _rows(s["properties"], "", s.get("required", [])):
        lines.append(f"| `{path}` | {kind} | {default} | {desc.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference())
