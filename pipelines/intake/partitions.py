"""Partitions of leads for streaming predict: where each lead's rows go (by its account, so that an account's leads,
deals and events stay together) and a validated table written and read back one partition at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


def partition_of(ids: pd.Series, partitions: int) -> np.ndarray:
    """Each id's partition (0 .. partitions - 1): pandas' `hash_array` of the id's text (SipHash under a fixed key:
    the same in every process and every run, unlike Python's salted `hash()`), modulo `partitions`. A categorical is
    hashed once per category; a missing id goes to partition 0."""
    if partitions == 1:
        return np.zeros(len(ids), dtype="int32")
    if isinstance(ids.dtype, pd.CategoricalDtype):
        per_level = np.append(_hashed(pd.Series(ids.cat.categories), partitions), 0)
        return per_level[ids.array.codes]  # code -1 (missing) reads the appended 0
    return _hashed(ids, partitions)


def _hashed(ids: pd.Series, partitions: int) -> np.ndarray:
    text = ids.astype("string")
    return np.where(text.isna().to_numpy(), 0, _text_hashes(text) % np.uint64(partitions)).astype("int32")


@dataclass(frozen=True)
class LeadRouter:
    """Which partition a lead's rows go to: its account's (`partition_of` the account id), so that an account's leads,
    their deals and their events stay together (a lead's account features need every lead of its account); a lead
    without an account, or one the leads table does not name, goes where its own id does. Held as each lead id's
    64-bit hash (sorted) and partition: 12 bytes a lead, whatever the ids' text."""

    partitions: int
    keys: np.ndarray  # uint64: the leads' id hashes, sorted
    parts: np.ndarray  # int32: each key's partition

    @classmethod
    def of_leads(cls, lead_id: pd.Series, account_id: pd.Series | None, partitions: int) -> LeadRouter:
        """The router of a leads table's `lead_id` and `account_id` (unique lead ids: the validated leads)."""
        owner = lead_id if account_id is None else account_id.astype("string").fillna(lead_id.astype("string"))
        keys = _id_hashes(lead_id)
        order = np.argsort(keys, kind="stable")
        return cls(partitions, keys[order], partition_of(owner, partitions)[order])

    def of(self, ids: pd.Series) -> np.ndarray:
        """Each id's partition (0 .. partitions - 1); a missing id goes to 0."""
        if self.partitions == 1:
            return np.zeros(len(ids), dtype="int32")
        if isinstance(ids.dtype, pd.CategoricalDtype):
            per_level = np.append(self.of(pd.Series(ids.cat.categories)), 0).astype("int32")
            return per_level[ids.array.codes]
        hashes = _id_hashes(ids)
        at = np.minimum(np.searchsorted(self.keys, hashes), max(len(self.keys) - 1, 0))
        known = self.keys[at] == hashes if len(self.keys) else np.zeros(len(ids), dtype=bool)
        return np.where(known, self.parts[at] if len(self.parts) else 0, partition_of(ids, self.partitions))


@dataclass(frozen=True)
class TableParts:
    """A validated table (the leads, their deals, the accounts) written by partition of leads (`LeadRouter`) and read
    back one partition at a time, each as the rows the whole table holds for it, in the same order and with the
    whole table's column types (a category keeps every level of the whole table)."""

    folder: Path
    empty: pd.DataFrame  # no rows: the columns and their types

    @classmethod
    def write(cls, frame: pd.DataFrame, parts: np.ndarray, *, partitions: int, folder: Path) -> TableParts:
        """`frame`'s rows into `folder`, each row to its partition in `parts`."""
        folder.mkdir(parents=True, exist_ok=True)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange(partitions + 1))
        for part in range(partitions):
            if bounds[part] < bounds[part + 1]:
                rows = frame.iloc[order[bounds[part] : bounds[part + 1]]]
                rows.to_parquet(folder / f"{part:05d}.parquet", index=False)
        return cls(folder, frame.iloc[:0])

    def read(self, part: int) -> pd.DataFrame:
        path = self.folder / f"{part:05d}.parquet"
        if not path.exists():
            return self.empty
        return pd.read_parquet(path).astype(self.empty.dtypes.to_dict())


def _id_hashes(ids: pd.Series) -> np.ndarray:
    return _text_hashes(ids.astype("string"))


def _text_hashes(text: pd.Series) -> np.ndarray:
    """SipHash (pandas' fixed key) of each id's text; a missing id hashes as the empty text."""
    return pd.util.hash_array(text.fillna("").to_numpy(dtype=object), categorize=False)
