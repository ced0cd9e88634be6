"""Crossplane Compositions, pure: function-patch-and-transform and its inverse for drift.

What Crossplane does with a Composition (pipeline mode, ``function-patch-and-transform``,
or the legacy ``spec.resources``): every resource template's ``base`` is patched from the
composite (``FromCompositeFieldPath``, ``CombineFromComposite``, via ``patchSets`` too),
and the composite's status is patched back from the observed resources
(``ToCompositeFieldPath``, ``CombineToComposite``). Transforms: ``map``, ``match``,
``math`` (Multiply, ClampMin, ClampMax), ``string`` (Format, Convert, TrimPrefix,
TrimSuffix, Regexp, Join), ``convert``.

Both the sandbox's Crossplane stand-in (to compose) and the drift observer (to map a
managed resource's field back to the claim field a patch reads, through the inverse of
its transforms) use this module; it does no I/O.

Field paths are Crossplane's: ``spec.forProvider.memorySize``,
``metadata.annotations[crossplane.io/external-name]``, ``spec.items[0].name``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from domain.errors import BadInput
from domain.paths import MISSING

if TYPE_CHECKING:
    from domain.authority import PolicyBundle

COMPOSITION_KIND = "Composition"
RESOURCE_NAME_ANNOTATION = "crossplane.io/composition-resource-name"
EXTERNAL_NAME_ANNOTATION = "crossplane.io/external-name"
FROM_PATCHES = ("FromCompositeFieldPath", "CombineFromComposite")
TO_PATCHES = ("ToCompositeFieldPath", "CombineToComposite")
MAX_PATCHES = 1000  # per resource, after patch sets are expanded

Segment = str | int
FieldPath = tuple[Segment, ...]


class CompositionError(BadInput):
    """A Composition (or a patch in it) that cannot be used; names the composition,
    resource and field."""


class NotInvertible(Exception):
    """A transform whose input cannot be told from its output (ToUpper, a hash, ...)."""


# ---- field paths ----------------------------------------------------------------------------

_SEGMENT = re.compile(r"""\.?(?:([^.\[\]]+)|\[(\d+)\]|\[["']?([^\]"']+)["']?\])""")


def parse_field_path(text: str) -> FieldPath:
    """Crossplane's field path syntax (``a.b[0].c``, ``a[key.with.dots]``)."""
    if not text or text.startswith("."):
        raise CompositionError(f"invalid field path {text!r}")
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            raise CompositionError(f"cannot parse field path {text!r} at position {pos}")
        if m.group(2) is not None:
            segments.append(int(m.group(2)))
        else:
            segments.append(m.group(1) if m.group(1) is not None else m.group(3))
        pos = m.end()
    return tuple(segments)


def format_field_path(path: FieldPath) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int) or "." in seg or "/" in seg:
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else seg
    return out


def get_field(obj: Any, path: FieldPath) -> Any:
    """The value at ``path``, or ``MISSING``."""
    cur = obj
    for seg in path:
        if isinstance(seg, int):
            if not isinstance(cur, list) or seg >= len(cur):
                return MISSING
        elif not isinstance(cur, Mapping) or seg not in cur:
            return MISSING
        cur = cur[seg]
    return cur


def set_field(obj: dict[str, Any], path: FieldPath, value: Any) -> None:
    """Set ``value`` at ``path`` in place, creating maps and growing lists as needed."""
    cur: Any = obj
    for i, seg in enumerate(path):
        last = i == len(path) - 1
        nxt: Any = [] if not last and isinstance(path[i + 1], int) else {}
        if isinstance(seg, int):
            if not isinstance(cur, list):
                raise CompositionError(f"{format_field_path(path)}: not a list")
            while len(cur) <= seg:
                cur.append(None)
            if last:
                cur[seg] = copy.deepcopy(value)
            elif not isinstance(cur[seg], (dict, list)):
                cur[seg] = nxt
        else:
            if not isinstance(cur, dict):
                raise CompositionError(f"{format_field_path(path)}: not an object")
            if last:
                cur[seg] = copy.deepcopy(value)
            elif not isinstance(cur.get(seg), (dict, list)):
                cur[seg] = nxt
        if not last:
            cur = cur[seg]


# ---- Go's fmt, as far as compositions use it ----------------------------------------------

_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([%svdqtfx])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """``fmt.Sprintf`` for the verbs compositions use: %s %v %d %q %t %f %x %%."""
    out: list[str] = []
    pos, index = 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        verb = m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[index]
        index += 1
        out.append(_go_verb(verb, m.group(3), arg))
    out.append(fmt[pos:])
    return "".join(out)


def _go_value(arg: Any) -> str:
    if isinstance(arg, bool):
        return "true" if arg else "false"
    if isinstance(arg, float) and arg.is_integer():
        return str(int(arg))
    if isinstance(arg, (dict, list)):
        return json.dumps(arg, separators=(",", ":"))
    return str(arg)


def _go_verb(verb: str, precision: str | None, arg: Any) -> str:
    if verb in ("s", "v", "t"):
        return _go_value(arg)
    if verb == "d":
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            return f"%!d({type(arg).__name__}={_go_value(arg)})"
        return str(int(arg))
    if verb == "q":
        return json.dumps(_go_value(arg))
    if verb == "f":
        return f"{float(arg):.{int(precision) if precision else 6}f}"
    return format(int(arg), "x") if isinstance(arg, int) else _go_value(arg).encode().hex()


def _format_pattern(fmt: str) -> tuple[re.Pattern[str], list[str]] | None:
    """A regex that reads the arguments back out of ``fmt``'s output, and their verbs."""
    parts: list[str] = []
    verbs: list[str] = []
    pos = 0
    for m in _VERB.finditer(fmt):
        parts.append(re.escape(fmt[pos : m.start()]))
        pos = m.end()
        verb = m.group(4)
        if verb == "%":
            parts.append("%")
        elif m.group(1) or m.group(2) or m.group(3) or verb not in ("s", "v", "d"):
            return None
        else:
            parts.append("(-?[0-9]+)" if verb == "d" else "(.*?)")
            verbs.append(verb)
    parts.append(re.escape(fmt[pos:]))
    return re.compile("^" + "".join(parts) + "$", re.DOTALL), verbs


# ---- transforms -----------------------------------------------------------------------------


def _conf(t: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = t.get(key)
    if not isinstance(value, Mapping):
        raise CompositionError(f"transform {t.get('type')!r} needs a {key!r} object")
    return value


def apply_transform(t: Mapping[str, Any], value: Any) -> Any:
    """One transform applied to ``value`` (CompositionError for one that cannot apply)."""
    kind = t.get("type")
    if kind == "map":
        table = _conf(t, "map")
        key = value if isinstance(value, str) else _go_value(value)
        if key not in table:
            raise CompositionError(f"map transform: no entry for {key!r}")
        return copy.deepcopy(table[key])
    if kind == "match":
        return _match(_conf(t, "match"), value)
    if kind == "math":
        return _math(_conf(t, "math"), value)
    if kind == "string":
        return _string(_conf(t, "string"), value)
    if kind == "convert":
        conf = _conf(t, "convert")
        return _convert(value, str(conf.get("toType")), conf.get("format"))
    raise CompositionError(f"unsupported transform type {kind!r}")


def _match(conf: Mapping[str, Any], value: Any) -> Any:
    for pattern in conf.get("patterns") or []:
        kind = pattern.get("type", "literal")
        if kind == "literal" and value == pattern.get("literal"):
            return copy.deepcopy(pattern.get("result"))
        if (
            kind == "regexp"
            and isinstance(value, str)
            and re.search(str(pattern.get("regexp")), value)
        ):
            return copy.deepcopy(pattern.get("result"))
    if conf.get("fallbackTo") == "Input":
        return value
    if "fallbackValue" in conf:
        return copy.deepcopy(conf["fallbackValue"])
    raise CompositionError(f"match transform: no pattern matches {value!r}")


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CompositionError(f"{what}: input {value!r} is not a number")
    return value


def _math(conf: Mapping[str, Any], value: Any) -> Any:
    number = _number(value, "math transform")
    kind = conf.get("type") or ("Multiply" if "multiply" in conf else None)
    if kind == "Multiply":
        return number * _number(conf.get("multiply"), "math multiply")
    if kind == "ClampMin":
        return max(number, _number(conf.get("clampMin"), "math clampMin"))
    if kind == "ClampMax":
        return min(number, _number(conf.get("clampMax"), "math clampMax"))
    raise CompositionError(f"unsupported math transform {kind!r}")


_CONVERTS: dict[str, Callable[[str], str]] = {
    "ToUpper": lambda s: s.upper(),
    "ToLower": lambda s: s.lower(),
    "ToBase64": lambda s: base64.b64encode(s.encode()).decode(),
    "FromBase64": lambda s: base64.b64decode(s.encode()).decode(),
    "ToSha1": lambda s: hashlib.sha1(s.encode()).hexdigest(),
    "ToSha256": lambda s: hashlib.sha256(s.encode()).hexdigest(),
    "ToSha512": lambda s: hashlib.sha512(s.encode()).hexdigest(),
    "ToAdler32": lambda s: str(zlib.adler32(s.encode())),
}


def _string(conf: Mapping[str, Any], value: Any) -> Any:
    kind = conf.get("type") or ("Format" if "fmt" in conf else None)
    if kind == "Format":
        return go_sprintf(str(conf.get("fmt")), value)
    if kind == "Convert":
        how = str(conf.get("convert"))
        if how == "ToJson":
            return json.dumps(value, separators=(",", ":"))
        if how not in _CONVERTS:
            raise CompositionError(f"unsupported string convert {how!r}")
        return _CONVERTS[how](_go_value(value))
    if kind in ("TrimPrefix", "TrimSuffix"):
        text, trim = _go_value(value), str(conf.get("trim", ""))
        if kind == "TrimPrefix":
            return text.removeprefix(trim)
        return text.removesuffix(trim)
    if kind == "Regexp":
        regexp = conf.get("regexp") or {}
        m = re.search(str(regexp.get("match")), _go_value(value))
        if m is None:
            raise CompositionError(f"string Regexp: {regexp.get('match')!r} does not match")
        return m.group(int(regexp.get("group", 0)))
    if kind == "Join":
        if not isinstance(value, list):
            raise CompositionError("string Join: input is not a list")
        separator = str((conf.get("join") or {}).get("separator", ""))
        return separator.join(_go_value(v) for v in value)
    raise CompositionError(f"unsupported string transform {kind!r}")


def _convert(value: Any, to: str, fmt: Any = None) -> Any:
    try:
        if to == "string":
            return json.dumps(value, separators=(",", ":")) if fmt == "json" else _go_value(value)
        if to in ("int", "int64"):
            if isinstance(value, bool):
                return int(value)
            return int(float(value)) if isinstance(value, str) and fmt != "quantity" else int(value)
        if to == "float64":
            return float(value)
        if to == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            return bool(value)
        if to in ("object", "array"):
            parsed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict if to == "object" else list):
                raise ValueError(value)
            return parsed
    except (TypeError, ValueError) as e:
        raise CompositionError(f"convert: cannot make {to} of {value!r}") from e
    raise CompositionError(f"unsupported convert toType {to!r}")


def apply_transforms(transforms: list[Mapping[str, Any]], value: Any) -> Any:
    for t in transforms:
        value = apply_transform(t, value)
    return value


def invert_transform(t: Mapping[str, Any], value: Any, before: Any) -> Any:
    """The input that makes ``t`` output ``value``; ``before`` is an input of the same kind
    (the claim's current value), which fixes types. NotInvertible when it cannot be told."""
    kind = t.get("type")
    if kind == "map":
        table = _conf(t, "map")
        keys = [k for k, v in table.items() if _same(v, value)]
        if len(keys) != 1:
            raise NotInvertible(f"map: {len(keys)} keys give {value!r}")
        return _like(keys[0], before)
    if kind == "math":
        conf = _conf(t, "math")
        if (conf.get("type") or "Multiply") != "Multiply":
            raise NotInvertible("math clamp")
        factor = _number(conf.get("multiply"), "math multiply")
        number = _number(value, "math inverse")
        if factor == 0:
            raise NotInvertible("math multiply by 0")
        result = number / factor
        if isinstance(before, int) and not isinstance(before, bool):
            if not float(result).is_integer():
                raise NotInvertible(f"{value!r} is not a multiple of {factor!r}")
            return int(result)
        return result
    if kind == "string":
        return _invert_string(_conf(t, "string"), value, before)
    if kind == "convert":
        return _like(value, before)
    raise NotInvertible(f"transform {kind!r}")


def _invert_string(conf: Mapping[str, Any], value: Any, before: Any) -> Any:
    if not isinstance(value, str):
        raise NotInvertible("string transform of a non-string")
    kind = conf.get("type") or ("Format" if "fmt" in conf else None)
    if kind == "Format":
        found = _format_pattern(str(conf.get("fmt")))
        if found is None or len(found[1]) != 1:
            raise NotInvertible("format without exactly one plain verb")
        m = found[0].match(value)
        if m is not None:
            return _like(m.group(1), before)
        return _like(_from_json_format(str(conf.get("fmt")), value), before)
    if kind == "TrimPrefix":
        return str(conf.get("trim", "")) + value
    if kind == "TrimSuffix":
        return value + str(conf.get("trim", ""))
    if kind == "Convert" and conf.get("convert") in ("ToBase64", "FromBase64", "ToJson"):
        how = conf.get("convert")
        if how == "ToBase64":
            return base64.b64decode(value.encode()).decode()
        if how == "FromBase64":
            return base64.b64encode(value.encode()).decode()
        return json.loads(value)
    raise NotInvertible(f"string {kind}")


_SENTINEL = "tributary-sentinel-7f3a"


def _from_json_format(fmt: str, value: str) -> Any:
    """The argument of a format that renders JSON, read from ``value`` however AWS spelled
    it (spaces, key order): where the sentinel lands in the parsed template, read ``value``."""
    try:
        template, observed = json.loads(go_sprintf(fmt, _SENTINEL)), json.loads(value)
    except ValueError as e:
        raise NotInvertible(f"{value!r} does not match the format") from e

    def find(node: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
        if isinstance(node, str) and _SENTINEL in node:
            return path, node
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            hit = find(child, (*path, key))
            if hit is not None:
                return hit
        return None

    hit = find(template, ())
    if hit is None:
        raise NotInvertible("the format's argument is not a JSON string")
    path, text = hit
    got = get_field(observed, path)
    if not isinstance(got, str):
        raise NotInvertible(f"{value!r} does not match the format")
    before, _, after = text.partition(_SENTINEL)
    if not (got.startswith(before) and got.endswith(after)):
        raise NotInvertible(f"{value!r} does not match the format")
    return got[len(before) : len(got) - len(after)]


def _like(value: Any, before: Any) -> Any:
    """``value`` in the type of ``before`` (a claim field's type)."""
    if before is MISSING or before is None or type(value) is type(before):
        return value
    try:
        if isinstance(before, bool):
            return _convert(value, "bool")
        if isinstance(before, int):
            return _convert(value, "int")
        if isinstance(before, float):
            return _convert(value, "float64")
        if isinstance(before, str):
            return _go_value(value)
    except CompositionError as e:
        raise NotInvertible(str(e)) from e
    return value


def invert_transforms(transforms: list[Mapping[str, Any]], value: Any, before: Any) -> Any:
    """The input of the transform chain that outputs ``value`` (``before``: the current input,
    replayed forward to know each step's input type)."""
    if not transforms:
        return _like(value, before)
    inputs = [before]
    for t in transforms[:-1]:
        try:
            inputs.append(apply_transform(t, inputs[-1]))
        except CompositionError:
            inputs.append(MISSING)
    try:
        for t, step_input in zip(reversed(transforms), reversed(inputs), strict=True):
            value = invert_transform(t, value, step_input)
    except CompositionError as e:
        raise NotInvertible(e.message) from e
    return _like(value, before)


# ---- equality as AWS and Kubernetes see it ---------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """Equal as values: 128 == 128.0; two JSON documents as strings compare parsed."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        if a == b:
            return True
        if a[:1] in "{[" and b[:1] in "{[":
            try:
                return bool(json.loads(a) == json.loads(b))
            except ValueError:
                return False
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ---- the composition ------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    type: str
    from_paths: tuple[FieldPath, ...]  # one, or the combine's variables
    to_path: FieldPath
    transforms: tuple[Mapping[str, Any], ...] = ()
    fmt: str = ""  # CombineFromComposite / CombineToComposite string format
    required: bool = False


@dataclass(frozen=True)
class ResourceTemplate:
    name: str
    base: Mapping[str, Any]
    patches: tuple[Patch, ...] = ()


@dataclass(frozen=True)
class Composition:
    name: str
    composite_api_version: str
    composite_kind: str
    resources: tuple[ResourceTemplate, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def template(self, name: str) -> ResourceTemplate | None:
        return next((r for r in self.resources if r.name == name), None)


def _patch(raw: Any, where: str) -> Patch:
    if not isinstance(raw, Mapping):
        raise CompositionError("a patch must be an object", obj=where)
    kind = str(raw.get("type") or "FromCompositeFieldPath")
    transforms = tuple(raw.get("transforms") or [])
    if not all(isinstance(t, Mapping) for t in transforms):
        raise CompositionError("transforms must be objects", obj=where)
    required = ((raw.get("policy") or {}).get("fromFieldPath")) == "Required"
    try:
        if kind in ("FromCompositeFieldPath", "ToCompositeFieldPath"):
            source = str(raw.get("fromFieldPath") or "")
            target = str(raw.get("toFieldPath") or source)
            return Patch(
                kind,
                (parse_field_path(source),),
                parse_field_path(target),
                transforms,
                required=required,
            )
        if kind in ("CombineFromComposite", "CombineToComposite"):
            combine = raw.get("combine") or {}
            if combine.get("strategy", "string") != "string":
                raise CompositionError(f"unsupported combine strategy {combine.get('strategy')!r}")
            variables = combine.get("variables") or []
            if not variables:
                raise CompositionError("combine needs variables")
            return Patch(
                kind,
                tuple(parse_field_path(str(v.get("fromFieldPath") or "")) for v in variables),
                parse_field_path(str(raw.get("toFieldPath") or "")),
                transforms,
                fmt=str((combine.get("string") or {}).get("fmt") or ""),
                required=required,
            )
    except CompositionError as e:
        raise CompositionError(e.message, obj=where) from e
    raise CompositionError(f"unsupported patch type {kind!r}", obj=where)


def _expand(
    patches: list[Any], sets: Mapping[str, list[Any]], where: str
) -> Iterator[tuple[Any, str]]:
    for i, raw in enumerate(patches):
        if isinstance(raw, Mapping) and raw.get("type") == "PatchSet":
            name = str(raw.get("patchSetName"))
            if name not in sets:
                raise CompositionError(f"no patchSet named {name!r}", obj=f"{where}.patches[{i}]")
            for j, inner in enumerate(sets[name]):
                yield inner, f"{where}.patches[{i}] (patchSet {name} [{j}])"
        else:
            yield raw, f"{where}.patches[{i}]"


def _pt_inputs(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The patch-and-transform inputs of a composition: its pipeline steps, or its legacy
    ``spec.resources``."""
    if spec.get("mode") == "Pipeline" or "pipeline" in spec:
        for step in spec.get("pipeline") or []:
            inp = step.get("input") or {}
            ref = str((step.get("functionRef") or {}).get("name") or "")
            if inp.get("kind") == "Resources" or "patch-and-transform" in ref:
                yield inp
    else:
        yield spec


def parse_composition(doc: Mapping[str, Any], *, file: str | None = None) -> Composition:
    """A Composition document read into templates (CompositionError names what is wrong)."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    if doc.get("kind") != COMPOSITION_KIND or not name:
        raise CompositionError("not a named Composition", file=file, obj=name or None)
    spec = doc.get("spec") or {}
    ref = spec.get("compositeTypeRef") or {}
    if not ref.get("apiVersion") or not ref.get("kind"):
        raise CompositionError(
            "needs spec.compositeTypeRef.apiVersion and .kind", file=file, obj=name
        )
    templates: list[ResourceTemplate] = []
    try:
        for inp in _pt_inputs(spec):
            sets = {
                str(s.get("name")): list(s.get("patches") or []) for s in inp.get("patchSets") or []
            }
            for i, raw in enumerate(inp.get("resources") or []):
                rname = str(raw.get("name") or f"resource-{i}")
                where = f"Composition {name} resource {rname}"
                base = raw.get("base")
                if not isinstance(base, Mapping) or not base.get("apiVersion"):
                    raise CompositionError("needs a base with apiVersion and kind", obj=where)
                patches = [
                    _patch(p, w) for p, w in _expand(list(raw.get("patches") or []), sets, where)
                ]
                if len(patches) > MAX_PATCHES:
                    raise CompositionError(f"more than {MAX_PATCHES} patches", obj=where)
                templates.append(ResourceTemplate(rname, copy.deepcopy(dict(base)), tuple(patches)))
    except CompositionError as e:
        raise CompositionError(e.message, file=file, obj=e.obj, field=e.field) from e
    if len({t.name for t in templates}) != len(templates):
        raise CompositionError("resource names must be unique", file=file, obj=name)
    return Composition(
        name,
        str(ref["apiVersion"]),
        str(ref["kind"]),
        tuple(templates),
        dict((doc.get("metadata") or {}).get("labels") or {}),
    )


def select_composition(
    compositions: list[Composition],
    api_version: str,
    kind: str,
    *,
    name: str = "",
    default: str = "",
) -> Composition | None:
    """The composition for a composite: by name (its ``compositionRef``), else the XRD's
    default, else the only one for the composite type."""
    group = api_version.split("/")[0]
    fits = [
        c
        for c in compositions
        if c.composite_kind == kind and c.composite_api_version.split("/")[0] == group
    ]
    for wanted in (name, default):
        if wanted:
            found = next((c for c in fits if c.name == wanted), None)
            if found is not None or wanted == name:
                return found
    return fits[0] if len(fits) == 1 else None


# ---- composing ------------------------------------------------------------------------------


def _source(patch: Patch, source: Mapping[str, Any]) -> Any:
    """A patch's input value from ``source``, or MISSING when a variable is absent."""
    values = [get_field(source, p) for p in patch.from_paths]
    if any(v is MISSING for v in values):
        if patch.required:
            missing = format_field_path(patch.from_paths[values.index(MISSING)])
            raise CompositionError(f"required field {missing} is missing")
        return MISSING
    if patch.type.startswith("Combine"):
        return go_sprintf(patch.fmt, *values)
    return values[0]


def apply_patch(patch: Patch, source: Mapping[str, Any], target: dict[str, Any]) -> None:
    value = _source(patch, source)
    if value is MISSING:
        return  # Optional (the default): a patch without input is skipped
    set_field(target, patch.to_path, apply_transforms(list(patch.transforms), value))


@dataclass(frozen=True)
class Composed:
    name: str
    body: dict[str, Any]


def render(composition: Composition, composite: Mapping[str, Any]) -> list[Composed]:
    """Every resource the composition makes of ``composite``: base plus From patches, named
    by the ``crossplane.io/composition-resource-name`` annotation."""
    out: list[Composed] = []
    for template in composition.resources:
        body = copy.deepcopy(dict(template.base))
        for i, patch in enumerate(template.patches):
            if patch.type in FROM_PATCHES:
                try:
                    apply_patch(patch, composite, body)
                except CompositionError as e:
                    raise CompositionError(
                        e.message,
                        obj=f"Composition {composition.name} resource {template.name}",
                        field=f"patches[{i}] → {format_field_path(patch.to_path)}",
                    ) from e
        annotations = body.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[RESOURCE_NAME_ANNOTATION] = template.name
        out.append(Composed(template.name, body))
    return out


def patch_composite(
    composition: Composition, composite: Mapping[str, Any], observed: Mapping[str, Any]
) -> dict[str, Any]:
    """``composite`` with the To patches applied from the observed resources (by template
    name); a resource not observed yet, or a field it lacks, leaves the composite as is."""
    out = copy.deepcopy(dict(composite))
    for template in composition.resources:
        resource = observed.get(template.name)
        if resource is None:
            continue
        for patch in template.patches:
            if patch.type in TO_PATCHES:
                try:
                    apply_patch(patch, resource, out)
                except CompositionError:
                    continue  # like Crossplane: the composite's status is best effort
    return out


# ---- drift: observed state against what the patches derive ---------------------------------


@dataclass(frozen=True)
class FieldDrift:
    """One managed resource field whose observed value is not what the composition derives.

    ``claim_path`` is the composite (claim) field the patch reads, with ``claim_live`` the
    value that would make the patch derive what AWS holds; empty when no patch maps the field
    back (a base value, a combine, a transform without an inverse)."""

    resource: str  # the template name
    path: str  # in the managed resource, e.g. spec.forProvider.memorySize
    wanted: Any
    observed: Any
    claim_path: FieldPath = ()
    claim_live: Any = None


def _leaves(wanted: Any, observed: Any, path: FieldPath) -> Iterator[tuple[FieldPath, Any, Any]]:
    """Leaf differences. A top-level field ``observed`` lacks is not compared (providers
    report what they read back); below one it reports, a missing key is a difference."""
    if (observed is MISSING and not path) or _same(wanted, observed):
        return
    if isinstance(wanted, dict) and isinstance(observed, dict):
        for key, value in wanted.items():
            if not path and key not in observed:
                continue
            yield from _leaves(value, observed.get(key, MISSING), (*path, key))
        return
    if observed is MISSING:
        yield path, wanted, None
        return
    if isinstance(wanted, list) and isinstance(observed, list) and len(wanted) == len(observed):
        for i, (w, o) in enumerate(zip(wanted, observed, strict=True)):
            yield from _leaves(w, o, (*path, i))
        return
    yield path, wanted, observed


FOR_PROVIDER: FieldPath = ("spec", "forProvider")
AT_PROVIDER: FieldPath = ("status", "atProvider")


def resource_drift(
    composition: Composition, composite: Mapping[str, Any], resource: Mapping[str, Any]
) -> list[FieldDrift]:
    """Compare a managed resource's ``status.atProvider`` with the ``spec.forProvider`` the
    composition derives from ``composite``, and map each difference back to a composite field
    through the patch that wrote it (inverting its transforms)."""
    name = str(
        ((resource.get("metadata") or {}).get("annotations") or {}).get(RESOURCE_NAME_ANNOTATION)
        or ""
    )
    template = composition.template(name)
    if template is None:
        return []
    [wanted] = [c.body for c in render(composition, composite) if c.name == name]
    out: list[FieldDrift] = []
    at = get_field(resource, AT_PROVIDER)
    for sub, want, have in _leaves(
        get_field(wanted, FOR_PROVIDER), at if isinstance(at, dict) else {}, ()
    ):
        path = (*FOR_PROVIDER, *sub)
        drift = FieldDrift(name, format_field_path(path), want, have)
        writer = next(
            (p for p in reversed(template.patches) if p.type in FROM_PATCHES and p.to_path == path),
            None,
        )
        if writer is not None and writer.type == "FromCompositeFieldPath":
            before = get_field(composite, writer.from_paths[0])
            try:
                live = invert_transforms(list(writer.transforms), have, before)
                # Only a true inverse maps back: forward again it must give what AWS holds.
                if _same(apply_transforms(list(writer.transforms), live), have):
                    drift = FieldDrift(
                        name,
                        drift.path,
                        want,
                        have,
                        claim_path=writer.from_paths[0],
                        claim_live=live,
                    )
            except (NotInvertible, CompositionError):
                pass
        out.append(drift)
    return out


class CompositionCache:
    """A policy bundle's Compositions, parsed once per bundle (by its digest): the drift
    check and the sweep read the same bundles on every check."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[Composition]] = {}

    def of(self, bundle: PolicyBundle) -> list[Composition]:
        key = bundle.digest or json.dumps(bundle.compositions, sort_keys=True)
        if key not in self._by_key:
            self._by_key[key] = [
                parse_composition(doc, file=path)
                for path, docs in bundle.compositions.items()
                for doc in docs
            ]
        return self._by_key[key]
