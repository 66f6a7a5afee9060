"""`sliceops add [--count K]`: append the next free slice ids to the inventory file, so the
file stays the one truth and the next deploy brings the slices up.

Next free means above every id the file lists, whatever its status (a `destroying` slice's
id, or a gap left by one, may still name a database or a backup), and above every id the
target still holds (read as `sliceops status` reads it: an orphan, whose entry was deleted,
keeps its database), so an id is never handed out twice. `--offline` skips the target. The file is edited as text, not re-serialised: the new entries are inserted right
after the last entry of `slices:`, in that entry's own style (block `- id: N` at its dash's
column, or flow `{id: N}`), and every other byte stays as it was, comments, order, quoting
and indentation included. A round-trip dumper such as ruamel.yaml re-emits the whole
document with one indentation and its own spacing of comments and flow collections, which
changes lines the operator wrote. The positions come from the same YAML parser the loader
uses (PyYAML's composed nodes and their marks).

Before the file is replaced, the result must load (sliceops.inventory.load) and must read as
the old file plus exactly the new entries; it is then written atomically (a temporary file in
the same folder with the same mode, fsync, rename). Anything else is one line and exit 2,
with the file untouched.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from sliceops.errors import InventoryError, RemoteStateError, SliceopsError
from sliceops.inventory import Inventory, load
from sliceops.usage import OneLineParser

# At most this many slices per call: more is a typo, not a plan (the schema's id limit holds anyway).
MAX_COUNT = 1000


def parser() -> OneLineParser:
    p = OneLineParser(prog="sliceops add", description="Append the next free slice ids to the inventory file.",
                      epilog="The file is the one of -i/--inventory FILE (default: inventory/slices.yaml); "
                             "nothing on the host changes until the next deploy.")
    p.add_argument("--count", type=int, default=1, metavar="K", help="how many slices to append (default: 1)")
    p.add_argument("--offline", action="store_true",
                   help="choose ids from the file alone, without reading the target for orphans")
    return p


class AddError(SliceopsError):
    """The inventory file cannot take the new slices (layout not understood, or invalid after)."""


@dataclass(frozen=True)
class Added:
    text: str  # the whole new file
    ids: tuple[int, ...]


def next_ids(inv: Inventory, count: int, taken: set[int] | frozenset[int] = frozenset()) -> tuple[int, ...]:
    """`count` ids above every id the file lists (destroying ones included; gaps are not
    reused) and every id in `taken` (the target's)."""
    top = max((*inv.slice_ids, *taken), default=0)
    return tuple(range(top + 1, top + 1 + count))


def host_ids(inv: Inventory) -> set[int]:
    """Slice ids the target holds: a database, gateway row or container, orphans included (one
    psql session and one Docker API call, as `sliceops status`)."""
    from sliceops.status.command import collect

    return {row.id for row in collect(inv)}


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_end(text: str, index: int) -> int:
    """Index of the end of the line holding `index` (before its newline, or the text's end)."""
    end = text.find("\n", index)
    if end == -1:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _last_index(node: yaml.Node) -> int:
    """End index of the last character written for `node`: a block mapping's own end mark lies
    where the next token starts (after any comments), so its last scalar's end is used."""
    if isinstance(node, yaml.ScalarNode) or node.flow_style:
        return node.end_mark.index
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return max((_last_index(child) for child in children), default=node.start_mark.index)


def _id_node(item: yaml.Node) -> yaml.ScalarNode | None:
    if isinstance(item, yaml.MappingNode):
        for key, value in item.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "id" and isinstance(value, yaml.ScalarNode):
                return value
    return None


def _entry_like(text: str, item: yaml.Node, new_id: int) -> str:
    """The text of a new entry in the style of `item` (an existing slice entry): its own text
    with the id replaced when it holds nothing but the id, else a plain `id: N` in its style."""
    id_node = _id_node(item)
    if isinstance(item, yaml.MappingNode) and len(item.value) == 1 and id_node is not None:
        start, end = item.start_mark.index, _last_index(item)
        own = text[start:end]
        if "\n" not in own and "#" not in own:
            a, b = id_node.start_mark.index - start, id_node.end_mark.index - start
            return own[:a] + str(new_id) + own[b:]
    return f"{{id: {new_id}}}" if item.flow_style else f"id: {new_id}"


def _slices_node(root: yaml.Node) -> yaml.Node:
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "slices":
            return value
    raise AddError("no `slices:` key to append to")


def insert(text: str, ids: tuple[int, ...]) -> str:
    """`text` with one entry per id appended to its `slices:` list, every other byte kept."""
    nl = _newline(text)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise AddError("the file is not a mapping")
    seq = _slices_node(root)
    if not isinstance(seq, yaml.SequenceNode):  # the loader refused it already; only a race gets here
        raise AddError("`slices:` is not a list")
    if seq.flow_style:
        return _insert_flow(text, seq, ids, nl)
    last = seq.value[-1]  # a block sequence has at least one item
    line_start = text.rfind("\n", 0, last.start_mark.index) + 1
    head = text[line_start : last.start_mark.index]
    dash = re.fullmatch(r"( *)-( +)", head)
    # `- id: 3` on one line: copy its dash's column and spacing; otherwise the list's column.
    lead = f"{dash[1]}-{dash[2]}" if dash else " " * seq.start_mark.column + "- "
    at = _line_end(text, _last_index(last))
    return text[:at] + "".join(f"{nl}{lead}{_entry_like(text, last, i)}" for i in ids) + text[at:]


def _insert_flow(text: str, seq: yaml.SequenceNode, ids: tuple[int, ...], nl: str) -> str:
    """`[{id: 1}, {id: 2}]` (one line or one item per line): after the last item, in its style."""
    if not seq.value:
        close = seq.end_mark.index - 1  # the `]`
        return text[:close] + ", ".join(f"{{id: {i}}}" for i in ids) + text[close:]
    last = seq.value[-1]
    end = _last_index(last)
    if len(seq.value) > 1 and seq.value[-2].end_mark.line != last.start_mark.line:
        # One item per line: each new one on its own line at the last one's column.
        sep = "," + nl + " " * last.start_mark.column
    else:
        sep = ", "
    return text[:end] + "".join(sep + _entry_like(text, last, i) for i in ids) + text[end:]


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, keeping the file's mode (and owner when we may)."""
    st = path.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass  # not root: the file becomes ours, as any editor's save would make it
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _validated(path: Path, text: str, before: Inventory, ids: tuple[int, ...]) -> None:
    """The new text must load (in the file's folder: relative paths resolve the same) and read
    as the old file plus exactly the new slices."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as out:
            out.write(text)
        try:
            after = load(tmp)
        except InventoryError as exc:
            first = exc.problems[0].replace(tmp, str(path))
            more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            raise AddError(f"with slice{'s' if len(ids) > 1 else ''} {_list(ids)} added it would not validate: "
                           f"{first}{more}") from None
    finally:
        os.unlink(tmp)
    added = tuple(s.id for s in after.slices if s.id not in before.slice_ids)
    old = tuple(s for s in after.slices if s.id in before.slice_ids)
    if added != ids or old != before.slices or _settings(after) != _settings(before):
        raise AddError(f"could not append to this layout of `slices:` (the result reads differently); "
                       f"add {', '.join(f'- id: {i}' for i in ids)} by hand")


def _settings(inv: Inventory) -> tuple:
    return (inv.target, inv.instance, inv.postgres, inv.gateway, inv.slice_defaults, inv.docker, inv.monitor,
            inv.backups, inv.ssh_key, inv.ssh_known_hosts)


def _list(ids: tuple[int, ...]) -> str:
    return ", ".join(str(i) for i in ids)


def add(inv: Inventory, count: int, taken: set[int] | frozenset[int] = frozenset()) -> Added:
    """The new file text with `count` slices appended above the file's and `taken` ids (nothing written)."""
    path = Path(inv.path)
    with open(path, newline="") as f:  # CRLF stays CRLF
        text = f.read()
    ids = next_ids(inv, count, taken)
    try:
        new = insert(text, ids)
    except yaml.YAMLError as exc:  # the loader parsed it a moment ago; only a race gets here
        raise AddError(f"unreadable YAML: {exc}") from None
    _validated(path, new, inv, ids)
    return Added(new, ids)


def run(path: str, argv: list[str]) -> int:
    """The command: exit 0 with the file extended, 2 (one line, file unchanged) otherwise."""
    args = parser().parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        print(f"sliceops: add --count: {args.count} is out of range (1-{MAX_COUNT})", file=sys.stderr)
        return 2
    try:
        inv = load(path)
    except InventoryError as exc:
        more = f" (and {len(exc.problems) - 1} more: sliceops check -i {path})" if len(exc.problems) > 1 else ""
        print(f"sliceops: add: {path} does not validate: {exc.problems[0]}{more}; the file is unchanged",
              file=sys.stderr)
        return 2
    taken: set[int] = set()
    if not args.offline:
        try:
            taken = host_ids(inv)
        except RemoteStateError as exc:
            print(f"sliceops: warning: add: {exc}: ids chosen from the file alone, so an orphan's id on the "
                  f"target could be given again (`sliceops status` lists orphans)", file=sys.stderr)
    try:
        result = add(inv, args.count, taken)
        _replace(Path(os.path.realpath(inv.path)), result.text)  # a symlinked file stays a link
    except AddError as exc:
        print(f"sliceops: add: {inv.path}: {exc}; the file is unchanged", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sliceops: add: {inv.path}: cannot write: {exc.strerror}; the file is unchanged", file=sys.stderr)
        return 2
    after = load(inv.path)
    ports = ", ".join(str(after.slice(i).port) for i in result.ids)
    plural = "s" if len(result.ids) > 1 else ""
    print(f"{inv.path}: added slice{plural} {_list(result.ids)} (port{plural} {ports}); "
          f"{len(after.slices)} slices listed")
    orphans = tuple(sorted(i for i in taken - set(inv.slice_ids) if i > max(inv.slice_ids, default=0)))
    if orphans:
        print(f"skipped: slice{'s' if len(orphans) > 1 else ''} {_list(orphans)} on {inv.target} but not in "
              f"{inv.path} (orphans keep their database: their ids are not reused)")
    print(f"next: sliceops plan -i {inv.path} (what the deploy would change), "
          f"then sliceops deploy -i {inv.path} (make deploy INVENTORY={inv.path}) to bring them up")
    return 0
