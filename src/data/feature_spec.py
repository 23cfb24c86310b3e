"""Feature specs: which columns of a delimited text file are the label, the numbers and the categories.

    python src/preprocess_data.py --data_path=DIR --feature_spec=SPEC.yaml

A spec (YAML; every key is checked, an unknown one is named with the nearest valid key):
    files: [train.csv]            # names or globs under data_path, read in this order (a glob's matches in natural
                                  # order: day_2 before day_10); NAME.gz is read where NAME is not there
    format: csv                   # csv (RFC 4180: fields may be "quoted", "" is a quote inside one) | tsv (no quoting)
    header: true                  # the first line of every file names the columns (every file the same header);
                                  # false: columns by 0-based index, or by the names given in `names`
    names: [...]                  # header: false only: a name for every column
    label: clicked                # 0/1 (also true/false, yes/no, any case); or {column: rating, min: 4}: 1 when the
                                  # number is >= min
    dense: [price, age]           # numbers; missing or negative -> 0, then log(1 + x) as for Criteo
    categorical: [city, device]   # any string; ids by vocabulary (threshold) or hashing (max_ind_range); "" = missing
    multi_hot:                    # list-valued columns: up to max_len values per sample, pooled into one vector
      - {name: tags, separator: "|", max_len: 8, pooling: sum}   # pooling: sum | mean; "" = an empty bag (a zero
                                  # vector); empty values inside a list are skipped; a longer list is cut to max_len
                                  # and counted (strict=1: an error); one table per column, shared by its values
    ignore: [event_id]            # columns to skip; every column must be named somewhere: an unnamed one is an error
    split: tail                   # tail: the last N // 7 lines of the (single) file are held out; last_file: the
                                  # last file is held out (val_split halves the held-out lines, as for Criteo)
    dense_format: float           # float (any decimal number) | int (integers only: Criteo's I1..I13)
    categorical_format: string    # string (hashed to 64-bit keys) | hex (at most 8 hex digits: Criteo's C1..C26)

The Criteo layouts are two specs shipped in src/data/specs/ (criteo_kaggle.yaml, criteo_terabyte.yaml); without
--feature_spec, a folder holding train.txt[.gz] uses the first, one holding day_N[.gz] files the second.
`FeatureSpec` is the file's content, checked; `Columns` is a spec resolved against the input's first line (which
column index is which feature), what the workers parse with.
"""
import difflib
import glob
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from src.model_utils.spec import POOLINGS, Feature, lookup_slots_of   # the model's poolings and ids layout

SPECS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")
BUILTIN = ("criteo_kaggle", "criteo_terabyte")
FORMATS = {"csv": ",", "tsv": "\t"}
SPLITS = ("tail", "last_file")
DENSE_FORMATS = ("float", "int")
CATEGORICAL_FORMATS = ("string", "hex")
MULTI_HOT_KEYS = ("name", "separator", "max_len", "pooling")
KEYS = ("files", "format", "header", "names", "label", "dense", "categorical", "multi_hot", "ignore", "split",
        "dense_format", "categorical_format")
Ref = Union[str, int]            # a column: its name, or (header: false, no names) its 0-based index


class FeatureSpecError(ValueError):
    """A feature spec that cannot be used; the message names the spec file, the key and the value."""


@dataclass(frozen=True)
class MultiHot:
    """A list-valued column: `separator`-separated values, at most `max_len` kept, pooled by `pooling`."""
    name: Ref
    separator: str = "|"
    max_len: int = 8
    pooling: str = "sum"


@dataclass(frozen=True)
class FeatureSpec:
    """A feature spec as written (see the module docstring), checked. `source` is the file it came from."""
    source: str
    files: Tuple[str, ...]
    label: Ref
    label_min: Optional[float] = None
    format: str = "csv"
    header: bool = True
    names: Tuple[str, ...] = ()
    dense: Tuple[Ref, ...] = ()
    categorical: Tuple[Ref, ...] = ()
    multi_hot: Tuple[MultiHot, ...] = ()
    ignore: Tuple[Ref, ...] = ()
    split: str = "tail"
    dense_format: str = "float"
    categorical_format: str = "string"

    @property
    def delimiter(self) -> str:
        """The field separator of the format."""
        return FORMATS[self.format]

    @property
    def quoted(self) -> bool:
        """True when fields may be quoted (csv)."""
        return self.format == "csv"

    def to_json(self) -> Dict[str, Any]:
        """The spec as recorded in metadata.json (and in the work folder's fingerprint)."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "source"}
        out["label"] = {"column": self.label, "min": self.label_min} if self.label_min is not None else self.label
        del out["label_min"]
        if not self.multi_hot:
            del out["multi_hot"]         # the record of a spec without list columns is as it was before they existed
        return out


def spec_path(name_or_path: str) -> str:
    """The file of a spec given by path, or by the name of a shipped spec (criteo_kaggle, criteo_terabyte)."""
    if name_or_path in BUILTIN:
        return os.path.join(SPECS_DIR, name_or_path + ".yaml")
    return name_or_path


def _fail(source: str, message: str) -> None:
    raise FeatureSpecError(f"feature spec '{source}': {message}")


def _nearest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _choice(source: str, data: dict, key: str, choices: Sequence[str], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        _fail(source, f"{key}: {value!r} is not one of {list(choices)}{_nearest(value, choices)}")
    return value


def _refs(source: str, data: dict, key: str) -> Tuple[Ref, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        _fail(source, f"{key}: expected a list of column names (or 0-based indexes), found {value!r}")
    return tuple(value)


def _label(source: str, data: dict) -> Tuple[Ref, Optional[float]]:
    if "label" not in data:
        _fail(source, "label is missing: name the 0/1 column (label: clicked) or a threshold (label: {column: "
                      "rating, min: 4})")
    value = data["label"]
    if isinstance(value, dict):
        extra = sorted(set(value) - {"column", "min"})
        if extra or "column" not in value or not isinstance(value.get("min"), (int, float)) or \
                isinstance(value.get("min"), bool):
            _fail(source, f"label: {value!r}: expected {{column: NAME, min: NUMBER}}"
                          + (f"; unknown key {extra[0]!r}{_nearest(extra[0], ['column', 'min'])}" if extra else ""))
        value, minimum = value["column"], float(value["min"])
    else:
        minimum = None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        _fail(source, f"label: expected a column name or index, found {value!r}")
    return value, minimum


def _multi_hot(source: str, data: dict, delimiter: str) -> Tuple[MultiHot, ...]:
    value = data.get("multi_hot", [])
    if not isinstance(value, list):
        _fail(source, f"multi_hot: expected a list of {{name: COLUMN, separator: '|', max_len: N, pooling: sum|mean}}, "
                      f"found {value!r}")
    out = []
    for i, entry in enumerate(value):
        where = f"multi_hot[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            _fail(source, f"{where}: expected {{name: COLUMN, separator: '|', max_len: N, pooling: sum|mean}}, found "
                          f"{entry!r}")
        for key in entry:
            if key not in MULTI_HOT_KEYS:
                _fail(source, f"{where}: unknown key '{key}'{_nearest(key, MULTI_HOT_KEYS)}; the keys are "
                              f"{list(MULTI_HOT_KEYS)}")
        name, sep = entry["name"], entry.get("separator", "|")
        max_len, pooling = entry.get("max_len", 8), entry.get("pooling", "sum")
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            _fail(source, f"{where}: name: expected a column name or index, found {name!r}")
        if not isinstance(sep, str) or len(sep) != 1 or sep in (delimiter, '"', "\n", "\r"):
            _fail(source, f"{where} ({name}): separator: expected one character other than the field delimiter "
                          f"{delimiter!r} and the quote, found {sep!r}")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or not 1 <= max_len <= 4096:
            _fail(source, f"{where} ({name}): max_len: expected an integer in [1, 4096], found {max_len!r}")
        if pooling not in POOLINGS:
            _fail(source, f"{where} ({name}): pooling: {pooling!r} is not one of {list(POOLINGS)}"
                          f"{_nearest(pooling, POOLINGS)}")
        out.append(MultiHot(name=name, separator=sep, max_len=max_len, pooling=pooling))
    return tuple(out)


def load_feature_spec(name_or_path: str) -> FeatureSpec:
    """The checked spec of a YAML file (or a shipped spec's name); FeatureSpecError names what is wrong."""
    path = spec_path(name_or_path)
    if not os.path.isfile(path):
        _fail(path, f"no such file (give a YAML file, or one of the shipped specs {list(BUILTIN)})")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        _fail(path, f"not valid YAML: {str(exc).splitlines()[0]}")
    return spec_from_dict(data, path)


def spec_from_dict(data: Any, path: str) -> FeatureSpec:
    """The checked spec of a mapping of its keys (a YAML file's content, or a dataset's record of it:
    FeatureSpec.to_json()); `path` names it in messages."""
    if not isinstance(data, dict):
        _fail(path, f"expected a mapping of keys {list(KEYS)}, found {type(data).__name__}")
    for key in data:
        if key not in KEYS:
            _fail(path, f"unknown key '{key}'{_nearest(key, KEYS)}; the keys are {list(KEYS)}")
    files = data.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        _fail(path, f"files: expected a non-empty list of file names or globs, found {files!r}")
    header = data.get("header", True)
    if not isinstance(header, bool):
        _fail(path, f"header: expected true or false, found {header!r}")
    names = data.get("names", [])
    if names and (header or not all(isinstance(n, str) and n for n in names) or not isinstance(names, list)):
        _fail(path, "names: a list of column names, only with header: false (with a header, the header names them)")
    label, minimum = _label(path, data)
    spec = FeatureSpec(source=path, files=tuple(files), label=label, label_min=minimum,
                       format=_choice(path, data, "format", tuple(FORMATS), "csv"), header=header, names=tuple(names),
                       dense=_refs(path, data, "dense"), categorical=_refs(path, data, "categorical"),
                       multi_hot=_multi_hot(path, data, "," if data.get("format", "csv") == "csv" else "\t"),
                       ignore=_refs(path, data, "ignore"), split=_choice(path, data, "split", SPLITS, "tail"),
                       dense_format=_choice(path, data, "dense_format", DENSE_FORMATS, "float"),
                       categorical_format=_choice(path, data, "categorical_format", CATEGORICAL_FORMATS, "string"))
    if not spec.categorical and not spec.multi_hot:
        _fail(path, "categorical: the model needs at least one categorical (or multi_hot) column")
    return spec


@dataclass(frozen=True)
class Columns:
    """A spec resolved against the input's columns (picklable; the workers parse with it).
    names: every column's name in file order; label, dense, categorical: column indexes; multi_hot: (column index,
    its spec entry) pairs; header: the header's fields (every file must start with them) or () without a header;
    label -1: a file to score without a label column.

    Slots (one table each) are the categorical columns, then the multi_hot ones. Key columns (ids per sample, the
    width of the dataset's ids) are one per categorical slot, then max_len per multi_hot slot: a list's values
    left-aligned, pads after them (-1 in the dataset)."""
    spec: FeatureSpec
    names: Tuple[str, ...]
    label: int
    dense: Tuple[int, ...]
    categorical: Tuple[int, ...]
    header: Tuple[str, ...] = ()
    multi_hot: Tuple[Tuple[int, MultiHot], ...] = ()

    @property
    def dense_names(self) -> List[str]:
        """The dense features' names, in model order."""
        return [self.names[i] for i in self.dense]

    @property
    def categorical_names(self) -> List[str]:
        """The categorical features' names, in slot order."""
        return [self.names[i] for i in self.categorical]

    @property
    def dense_dim(self) -> int:
        """Numbers per sample."""
        return len(self.dense)

    @property
    def multi_hot_names(self) -> List[str]:
        """The multi_hot features' names, in slot order (after the categorical ones)."""
        return [self.names[i] for i, _ in self.multi_hot]

    @property
    def slot_names(self) -> List[str]:
        """Every slot's (table's) name: the categorical features, then the multi_hot ones."""
        return self.categorical_names + self.multi_hot_names

    def features(self, table_sizes: Optional[Sequence[int]] = None) -> Tuple[Feature, ...]:
        """The model's features of these columns (src/model_utils/spec.py), in model order: dense, categorical,
        multi_hot; `table_sizes` their slots' rows (default 1 each, before the vocabulary is known)."""
        cats = len(self.categorical)
        rows = list(table_sizes) if table_sizes is not None else [1] * (cats + len(self.multi_hot))
        return tuple([Feature(n, "dense") for n in self.dense_names] +
                     [Feature(n, "categorical", rows=r) for n, r in zip(self.categorical_names, rows)] +
                     [Feature(n, "multi_hot", rows=r, max_len=e.max_len, pooling=e.pooling)
                      for n, r, (_, e) in zip(self.multi_hot_names, rows[cats:], self.multi_hot)])

    @property
    def slots(self) -> int:
        """Slots (tables): categorical and multi_hot features."""
        return len(self.categorical) + len(self.multi_hot)

    @property
    def lookups(self) -> int:
        """Ids per sample (the spec's lookups): one per categorical slot, max_len per multi_hot slot."""
        return len(lookup_slots_of(self.features()))

    @property
    def slot_keys(self) -> Tuple[slice, ...]:
        """Each slot's columns of the ids (keys before mapping): consecutive, as the spec lays the ids input out."""
        of = lookup_slots_of(self.features())
        return tuple(slice(of.index(s), len(of) - of[::-1].index(s)) for s in range(self.slots))

    @property
    def used(self) -> List[int]:
        """The columns read (label, dense, categorical, multi_hot), in file order."""
        label = {self.label} if self.has_label else set()
        return sorted({*label, *self.dense, *self.categorical, *(i for i, _ in self.multi_hot)})

    @property
    def has_label(self) -> bool:
        """False for a file to score that has no label column (label is then -1)."""
        return self.label >= 0


def resolve(spec: FeatureSpec, first_fields: Optional[Sequence[str]], where: str) -> Columns:
    """Resolve the spec against the input's first line (`first_fields`, split; `where` names it in messages): the
    header's names (header: true), or its field count (header: false without names; with names, the names give
    the columns and `first_fields` is not needed: a bad first line is then a bad line like any other). Every
    column the spec names must exist, each column has at most one role, and every column has one."""
    if spec.header:
        names = tuple(first_fields)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            _fail(spec.source, f"the header of {where} names column {dupes[0]!r} twice")
    elif spec.names:
        names = spec.names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            _fail(spec.source, f"names: column {dupes[0]!r} is named twice")
    else:
        names = tuple(f"column_{i}" for i in range(len(first_fields)))

    def index(ref: Ref, key: str) -> int:
        if isinstance(ref, int):
            if spec.header or spec.names:
                _fail(spec.source, f"{key}: {ref} is an index; name the column ({'the header' if spec.header else 'names'}"
                                   f" names them)")
            if not 0 <= ref < len(names):
                _fail(spec.source, f"{key}: column {ref} does not exist: the first line of {where} has {len(names)} "
                                   f"fields (0..{len(names) - 1})")
            return ref
        if ref not in names:
            _fail(spec.source, f"{key}: column '{ref}' is not in {'the header of ' if spec.header else 'names of '}"
                               f"{where}{_nearest(ref, names)}; its columns are {list(names)}")
        return names.index(ref)
    label = index(spec.label, "label")
    roles: Dict[int, str] = {label: "label"}
    groups = {}
    for key in ("dense", "categorical", "multi_hot", "ignore"):
        groups[key] = []
        for ref in getattr(spec, key):
            i = index(ref.name if key == "multi_hot" else ref, key)
            if i in roles:
                _fail(spec.source, f"column '{names[i]}' is named twice: under {roles[i]} and {key}")
            roles[i] = key
            groups[key].append(i)
    unnamed = [names[i] for i in range(len(names)) if i not in roles]
    if unnamed:
        _fail(spec.source, f"{where} has columns the spec does not name: {unnamed}; put each under dense, "
                           f"categorical, multi_hot or ignore")
    return Columns(spec=spec, names=names, label=label, dense=tuple(groups["dense"]),
                   categorical=tuple(groups["categorical"]), header=tuple(names) if spec.header else (),
                   multi_hot=tuple(zip(groups["multi_hot"], spec.multi_hot)))


def natural_key(name: str) -> List[Any]:
    """Sort key that orders embedded numbers by value (day_2 before day_10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_files(folder: str, spec: FeatureSpec) -> List[str]:
    """The input files of `spec` under `folder`, in order: each `files` entry's matches (natural order), NAME.gz
    where NAME is not there. An entry matching nothing, or a file present both plain and gzipped, is an error."""
    out: List[str] = []
    for pattern in spec.files:
        found = {}
        for path in glob.glob(os.path.join(glob.escape(folder), pattern)) + \
                glob.glob(os.path.join(glob.escape(folder), pattern + ".gz")):
            if not os.path.isfile(path):
                continue
            name = os.path.basename(path)
            plain = name[:-3] if name.endswith(".gz") else name
            if plain in found and found[plain] != name:
                raise FeatureSpecError(f"'{folder}' holds both {plain} and {plain}.gz: keep one of them")
            found[plain] = name
        if not found:
            raise FeatureSpecError(f"feature spec '{spec.source}': files entry '{pattern}' matches no file in "
                                   f"'{folder}'")
        for plain in sorted(found, key=natural_key):
            name = found[plain]
            if name not in out:
                out.append(name)
    return out


def ref_name(ref: Ref) -> str:
    """The name a training file's column has: its header name, or `column_I` for a 0-based index."""
    return ref if isinstance(ref, str) else f"column_{ref}"


def training_columns(spec: FeatureSpec) -> List[str]:
    """The columns of a spec without a header, in file order: its names, or column_0.. for 0-based indexes (every
    column has a role, so their count is the roles')."""
    roles = 1 + len(spec.dense) + len(spec.categorical) + len(spec.multi_hot) + len(spec.ignore)
    return list(spec.names) if spec.names else [f"column_{i}" for i in range(roles)]


def _scoring_names(spec: FeatureSpec, fields: Sequence[str], where: str) -> Tuple[str, ...]:
    """The column names of a file to score: its header, or (no header) the training columns, less the label when the
    file has one field fewer than training had."""
    if spec.header:
        return tuple(fields)
    train = training_columns(spec)
    if len(fields) == len(train):
        return tuple(train)
    if len(fields) == len(train) - 1:
        return tuple(n for n in train if n != ref_name(spec.label))
    _fail(spec.source, f"the first line of {where} has {len(fields)} fields; the model was trained on {len(train)} "
                       f"(give {len(train)}, or {len(train) - 1} without the label column)")


def resolve_for_scoring(spec: FeatureSpec, first_fields: Sequence[str], where: str) -> Columns:
    """The spec resolved against a file of new data to score (`first_fields`: its first line, split): the columns the
    model reads must be there (named by the header, or in the training layout); the label column may be missing
    (Columns.label is then -1), and so may ignored columns; a column the spec does not name is an error."""
    names = _scoring_names(spec, first_fields, where)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        _fail(spec.source, f"{where} names column {dupes[0]!r} twice")
    label = ref_name(spec.label)
    groups = {key: [ref_name(r.name if key == "multi_hot" else r) for r in getattr(spec, key)]
              for key in ("dense", "categorical", "multi_hot", "ignore")}
    needed = groups["dense"] + groups["categorical"] + groups["multi_hot"]
    missing = [n for n in needed if n not in names]
    if missing:
        _fail(spec.source, f"column {missing[0]!r}, which the model reads, is missing from {where}"
                           f"{_nearest(missing[0], names)}; its columns are {list(names)}")
    known = set(needed) | set(groups["ignore"]) | {label}
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(spec.source, f"{where} has column {unknown[0]!r}, which the model's feature spec does not name: the "
                           f"data is laid out otherwise than in training")
    index = names.index
    return Columns(spec=spec, names=names, label=index(label) if label in names else -1,
                   dense=tuple(map(index, groups["dense"])), categorical=tuple(map(index, groups["categorical"])),
                   header=names if spec.header else (),
                   multi_hot=tuple(zip(map(index, groups["multi_hot"]), spec.multi_hot)))
