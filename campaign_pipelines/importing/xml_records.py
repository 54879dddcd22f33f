"""Read an XML document's records into the read step's batches, streamed by lxml's
`iterparse`: each record element (`source.records`, a path from the root, prefixes from
`source.namespaces`) is read when it closes, then cleared with the siblings before it,
so memory holds one record whatever the file size.

A column's `source` is a path in the record: `email` (a child element's text), `@id` (an
attribute), `address/city` (nested), `address/@kind`, `.` (the record's own text);
prefixed steps (`c:email`, `@c:id`) take their namespace from `source.namespaces`. A
missing element or attribute is an empty value.

`__line` is the record's number; `__text` the record as written, after a comment giving
its number and the line its start tag is on — the rejects file is a well-formed document
of those records under the same root and path, which re-imports with the same template.

Safe by construction: no network, no DTD loaded, entities not resolved; a document that
declares entities in a DTD (a billion laughs, an external entity) is refused before its
first record, as is a document that is not well-formed (its line and column named).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from lxml import etree

from campaign_pipelines.errors import CampaignError
from campaign_pipelines.importing.documents import BATCH_RECORDS, DocumentReader, _Counted
from campaign_pipelines.importing.lines import open_binary
from campaign_pipelines.importing.read import LINE, TEXT

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def clark(step: str, namespaces: dict[str, str]) -> str:
    """`c:person` → `{urn:crm}person` (lxml's names); an unprefixed name has no namespace."""
    prefix, _, local = step.rpartition(":")
    return f"{{{namespaces[prefix]}}}{local}" if prefix else local


class _Field:
    """How one column's value is found in a record."""

    def __init__(self, source: str, namespaces: dict[str, str]):
        *elements, last = source.split("/")
        self.attribute = clark(last[1:], namespaces) if last.startswith("@") else None
        steps = elements if self.attribute else [*elements, last]
        steps = [s for s in steps if s != "."]
        self.element = "/".join(clark(s, namespaces) for s in steps) or None

    def value(self, record: Any, children: dict[str, Any]) -> str | None:
        """The value in `record`, whose direct children by tag (the first of each) are given."""
        if self.element is None:
            node = record
        elif "/" not in self.element:
            node = children.get(self.element)
        else:
            node = record.find(self.element)
        if node is None:
            return None
        if self.attribute is not None:
            return node.get(self.attribute)
        return node.text if len(node) == 0 else "".join(node.itertext())


def _opening_tag(element: Any) -> str:
    """An ancestor's start tag with the namespaces it declares, no attributes."""
    shallow = etree.Element(element.tag, nsmap=element.nsmap)
    return etree.tostring(shallow, encoding="unicode").removesuffix("/>").rstrip() + ">"


def _closing_tag(element: Any) -> str:
    local = etree.QName(element).localname
    return f"</{element.prefix}:{local}>" if element.prefix else f"</{local}>"


class XmlReader(DocumentReader):
    def _batches(self) -> Iterator[tuple[pa.RecordBatch, pa.Array]]:
        namespaces = self.source.namespaces
        path = [clark(step, namespaces) for step in (self.source.records or "").split("/")]
        fields = [_Field(source, namespaces) for source in self.layout.columns]
        number, chunk = 0, []
        opening: list[str] = []
        closing: list[str] = []
        etree.clear_error_log()  # the log is per thread: only this document's errors
        with open_binary(self.path, self.source) as stream:
            counted = _Counted(stream)
            # Events only for the path's elements (a record's children are read from the
            # record): a tenth of the events, and of the Python work.
            events = etree.iterparse(
                counted, events=("start", "end"), tag=list(dict.fromkeys(path)), resolve_entities=False, no_network=True,
                load_dtd=False, remove_comments=True, remove_pis=True, huge_tree=False,
            )
            depth = 0  # among the path's elements
            on_path = 0  # how many open elements match the path's first steps
            try:
                for event, element in events:
                    if event == "start":
                        if depth == 0 and not number and not opening:
                            self._check_root(element.getroottree().getroot(), path)
                        depth += 1
                        if on_path == depth - 1 and depth < len(path) and element.tag == path[depth - 1]:
                            on_path = depth
                            if len(opening) == depth - 1:  # the first such ancestor: the rejects file's
                                opening.append(_opening_tag(element))
                                closing.insert(0, _closing_tag(element))
                        continue
                    depth -= 1
                    if depth == len(path) - 1 and on_path == depth and element.tag == path[-1]:
                        number += 1
                        chunk.append(self._record(number, element, fields))
                        if len(chunk) == BATCH_RECORDS or number == self.source.limit:
                            self.bytes_seen = counted.bytes_read
                            yield self._chunk(chunk)
                            chunk = []
                    if depth < on_path:
                        on_path = depth
                    if depth < len(path):
                        # Done with it: a record read, or a branch off the path.
                        element.clear(keep_tail=False)
                        parent = element.getparent()
                        while parent is not None and element.getprevious() is not None:
                            del parent[0]
                    if number == self.source.limit:
                        break
            except etree.XMLSyntaxError as exc:
                # libxml2's own first words (an undefined entity), else lxml's summary.
                logged = [e for e in exc.error_log if e.level >= etree.ErrorLevels.ERROR]
                line, column, why = (logged[-1].line, logged[-1].column, logged[-1].message) if logged else (*exc.position, exc.msg)
                after = f" after its record {number}" if number else ""
                raise CampaignError(
                    f"file {self.path} is not well-formed XML (line {line}, column {column}: "
                    f"{' '.join(str(why).split())[:160]}){after}; nothing was loaded."
                ) from None
            if events.root is not None and not number and not opening:
                self._check_root(events.root, path)  # no element of the path at all
        self.bytes_seen = counted.bytes_read
        self.layout.prefix_lines = [DECLARATION, "".join(opening), "".join(closing)]
        if chunk:
            yield self._chunk(chunk)

    def _check_root(self, root: Any, path: list[str]) -> None:
        docinfo = root.getroottree().docinfo
        dtd = docinfo.internalDTD
        if dtd is not None and any(True for _ in dtd.iterentities()):
            raise CampaignError(
                f"file {self.path} declares entities in its DTD (<!ENTITY …>): entity expansion and external entities "
                "are refused; nothing was loaded."
            )
        if docinfo.system_url or docinfo.public_id:
            raise CampaignError(
                f"file {self.path} refers to an external DTD ({docinfo.system_url or docinfo.public_id}), which is never "
                "fetched; remove its DOCTYPE. Nothing was loaded."
            )
        if root.tag != path[0]:
            raise CampaignError(
                f"file {self.path}: its root element is <{etree.QName(root).localname}>"
                f"{' (namespace ' + etree.QName(root).namespace + ')' if etree.QName(root).namespace else ''}, "
                f"not the first step of source.records ({self.source.records})."
            )

    def _record(self, number: int, element: Any, fields: list[_Field]) -> tuple[int, str, list[str | None]]:
        written = etree.tostring(element, encoding="unicode", with_tail=False)
        text = f"<!-- record {number}, line {element.sourceline} -->{written}"
        children: dict[str, Any] = {}
        for child in element:
            children.setdefault(child.tag, child)
        return number, text, [f.value(element, children) for f in fields]

    def _chunk(self, chunk: list[tuple[int, str, list[str | None]]]) -> tuple[pa.RecordBatch, pa.Array]:
        self.consumed = chunk[-1][0]
        numbers = pa.array([c[0] for c in chunk], pa.int64())
        columns = [pa.array([c[2][i] for c in chunk], pa.string()) for i in range(len(self.layout.columns))]
        batch = pa.RecordBatch.from_arrays([numbers, pa.array([c[1] for c in chunk], pa.string()), *columns],
                                           names=[LINE, TEXT, *self.layout.columns])
        return batch, numbers
