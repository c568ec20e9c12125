"""The preference-data contract: schema and validation, readers/writers, flip and noise transforms, cards."""

from alignkit.data.card import card_path, write_card
from alignkit.data.io import (
    ReadResult,
    iter_jsonl,
    read_hf_dataset,
    read_jsonl,
    read_parquet,
    read_records,
    rejects_path,
    write_jsonl,
    write_parquet,
    write_records,
    write_rejects,
)
from alignkit.data.schema import DataError, record_problems, validate_record
from alignkit.data.transforms import bucket_stats, fdpo_flip, inject_noise, swap_pair

__all__ = [
    "DataError", "ReadResult", "bucket_stats", "card_path", "fdpo_flip", "inject_noise", "iter_jsonl",
    "read_hf_dataset",
    "read_jsonl", "read_parquet", "read_records", "record_problems", "rejects_path", "swap_pair",
    "validate_record", "write_card", "write_jsonl", "write_parquet", "write_records", "write_rejects",
]
