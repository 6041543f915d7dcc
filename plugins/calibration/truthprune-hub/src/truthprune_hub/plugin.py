"""Registration and the thin C4 / WikiText-2 calibration sources.

Both read the Hugging Face hub by default and a local copy with ``path=FILE``. Without network
the hub path fails with one line telling the user to pass ``--calibration-opt path=FILE``.

``format`` picks the windowing:

* ``document`` (default): the reference rule of each corpus -- for C4 a random window of a
  random document longer than seqlen (REFERENCE.md 3.2, ``truthprune.document_windows``); for
  WikiText-2 a random window of the whole train split joined with single spaces (3.5);
* ``concat``: random records (C4 documents, WikiText rows) concatenated past seqlen, then a
  random window (``truthprune.record_windows``);
* ``single``: one record per sample, padded on ``padding_side`` (``truthprune.padded_records``).
"""

from __future__ import annotations

from typing import Literal

from truthprune import CalibrationSource, RecordsConfig, hookimpl, hub_reachable


class HubTextConfig(RecordsConfig):
    path: str | None = None
    """Local copy instead of the hub (C4: .json/.json.gz/.jsonl; WikiText-2: raw .txt)."""
    format: Literal["document", "concat", "single"] = "document"


class C4Config(HubTextConfig):
    field: str = "text"


def _records_windows(records, tokenizer, nsamples, seqlen, seed, config, name):
    """The concat and single formats, shared by both sources."""
    from truthprune import formatted_records

    return formatted_records(records, tokenizer, nsamples, seqlen, seed, config.format, config.padding_side, name=name)


def _check_local_path(name: str, path: str | None) -> None:
    """A given local copy must exist; the hub itself is only contacted when samples are drawn."""
    import os

    from truthprune import UserError

    if path is not None and not os.path.isfile(path):
        raise UserError(f"calibration source {name!r}: path {path!r} is not a file; pass --calibration-opt path=FILE with a local copy")


class C4Source(CalibrationSource):
    name = "c4"
    description = "C4 (first English train shard, hub or path=FILE): the Wanda/OWL/TPLO document-window rule."
    Config = C4Config

    def check(self) -> None:
        """A local copy is read now (and kept for samples): a bad file fails before the model loads."""
        _check_local_path(self.name, self.config.path)
        if self.config.path is not None or not hub_reachable():  # offline: a cached copy or one line, now
            self._documents()

    def _documents(self) -> list[str]:
        from .text import c4_documents

        if getattr(self, "_docs", None) is None:
            self._docs = c4_documents(self.config.path, self.config.field)
        return self._docs

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune import document_windows

        docs = self._documents()
        if self.config.format == "document":
            return document_windows(docs, tokenizer, nsamples, seqlen, seed, name="c4")
        return _records_windows(docs, tokenizer, nsamples, seqlen, seed, self.config, "c4")


class WikiText2Source(CalibrationSource):
    name = "wikitext2"
    description = "WikiText-2 train split (hub or a local raw .txt): random windows of the joined text, as the reference."
    Config = HubTextConfig

    def check(self) -> None:
        """A local copy is read now (and kept for samples): a bad file fails before the model loads."""
        _check_local_path(self.name, self.config.path)
        if self.config.path is not None or not hub_reachable():  # offline: a cached copy or one line, now
            self._train_rows()

    def _train_rows(self) -> list[str]:
        from .text import wikitext_train_rows

        if getattr(self, "_rows", None) is None:
            self._rows = wikitext_train_rows(self.config.path)
        return self._rows

    def samples(self, tokenizer, nsamples, seqlen, seed):
        from truthprune import window_samples

        from .text import long_text_windows

        rows = self._train_rows()
        if self.config.format != "document":
            records = [r.strip() for r in rows if r.strip()]
            return _records_windows(records, tokenizer, nsamples, seqlen, seed, self.config, "wikitext2")
        ids = list(tokenizer(" ".join(rows))["input_ids"])
        return window_samples(long_text_windows(ids, nsamples, seqlen, seed),
                              f"wikitext2: {nsamples} windows of {seqlen} tokens from {len(ids)} joined tokens, seed {seed}")


@hookimpl
def register_calibration_sources(register):
    register(C4Source)
    register(WikiText2Source)
