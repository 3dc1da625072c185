"""The feed's query options (OData 4.0 part 2, section 5): read, checked, and turned into the
WHERE, ORDER BY and LIMIT of one parameterised statement on the reporting table.

`$filter` is parsed by odata-query's grammar (its AST only); every literal becomes a bound
parameter and every name one of the entity's columns, so no text of the request reaches the SQL.
What the feed does not do is refused with 501, what is wrong with 400: never a wrong answer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from odata_query import ast
from odata_query.exceptions import ODataException, ParsingException, TokenizingException
from odata_query.grammar import ODataLexer, ODataParser
from sly.lex import Token

from local_alx_report_api.classes.odata.model import ENTITY_TYPE, KEY, Property

MAX_FILTER = 8000  # characters: an incremental-refresh filter is ~100; a long `in` list fits
MAX_OPERATORS = 400  # and/or/not: SQLite refuses expressions deeper than 1000; `in` takes long lists
MAX_DEPTH = 20  # and/or/not nested: SQLite's parser overflows near 30 levels of parentheses
INT64 = (-(2 ** 63), 2 ** 63 - 1)
SUPPORTED = ("$select", "$filter", "$orderby", "$top", "$skip", "$count", "$skiptoken", "$format")
_OPS = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_FLIP = {ast.Lt: ast.Gt(), ast.LtE: ast.GtE(), ast.Gt: ast.Lt(), ast.GtE: ast.LtE(), ast.Eq: ast.Eq(),
         ast.NotEq: ast.NotEq()}
# positions and lengths counted the same way on each engine: characters (SQLite, PostgreSQL),
# bytes of binary strings (MariaDB, where a binary comparison is the only exact one)
_TEXT_FUNCTIONS = {
    "contains": {"sqlite": "instr({c}, ?) > 0", "postgresql": "strpos({c}, ?) > 0",
                 "mariadb": "INSTR(BINARY {c}, BINARY ?) > 0"},
    "startswith": {"sqlite": "substr({c}, 1, length(?)) = ?", "postgresql": "left({c}, length(?)) = ?",
                   "mariadb": "LEFT(BINARY {c}, LENGTH(?)) = BINARY ?"},
    "endswith": {"sqlite": "length(?) = 0 OR substr({c}, -length(?)) = ?",
                 "postgresql": "right({c}, length(?)) = ?",
                 "mariadb": "RIGHT(BINARY {c}, LENGTH(?)) = BINARY ?"},
}
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() takes ² and ①, which int() refuses
_FRACTION = re.compile(r"\.[0-9]+(?=[zZ+-]|$)")  # the seconds' fraction of a date and time


class ODataError(Exception):
    """An answer other than 200: its HTTP status, OData error code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad(message: str) -> ODataError:
    return ODataError(400, "badrequest", message)


def unsupported(message: str) -> ODataError:
    return ODataError(501, "notimplemented", message)


@dataclass
class Options:
    select: tuple[Property, ...]  # the properties of each entity in the answer
    selected: bool  # $select named them (the context URL says which)
    where: str  # "" or a condition on the reporting table's columns, with ? parameters
    params: list
    order: tuple[tuple[Property, bool], ...]  # $orderby then the rest of the key: (property, descending)
    top: int | None
    skip: int
    count: bool
    skiptoken: str | None
    metadata: str  # minimal | none | full
    ieee754: bool  # Int64 and Decimal values as strings (IEEE754Compatible=true)
    text: dict[str, str]  # the options as sent (what a nextLink keeps and a skiptoken is bound to)


def single(query: dict[str, list[str]]) -> dict[str, str]:
    """The query's options by lower-cased name (OData 4.01 reads them case-insensitively), each
    given once; unknown system options refused. Other names (wstoken, a client's own) pass."""
    options: dict[str, str] = {}
    for name, values in query.items():
        key = name.lower()
        if not key.startswith("$"):
            continue
        if key not in SUPPORTED:
            raise unsupported(f"The query option {name} is not supported by this feed "
                              f"(supported: {', '.join(SUPPORTED)})")
        if len(values) > 1 or key in options:
            raise bad(f"The query option {name} is given more than once")
        options[key] = values[0]
    return options


def parse(options: dict[str, str], props: tuple[Property, ...], kind: str, accept: str | None) -> Options:
    by_name = {p.name: p for p in props}
    if "$skiptoken" in options and ("$top" in options or "$skip" in options):
        raise bad("A nextLink is followed as it is: $top and $skip belong to the first request")
    select, selected = _select(options.get("$select"), props, by_name)
    where, params = _filter(options.get("$filter"), by_name, kind)
    metadata, ieee754 = _format(options.get("$format"), accept)
    return Options(select, selected, where, params, _orderby(options.get("$orderby"), by_name),
                   _count_or_int("$top", options.get("$top")), _count_or_int("$skip", options.get("$skip")) or 0,
                   _boolean("$count", options.get("$count")), options.get("$skiptoken"), metadata, ieee754,
                   {k: v for k, v in options.items() if k in ("$select", "$filter", "$orderby", "$count", "$format")})


# -- $select, $orderby, $top, $skip, $count, $format -------------------------------------------------
def _unknown(name: str) -> ODataError:
    return bad(f"Could not find a property named '{name}' on type '{ENTITY_TYPE}'")


def _select(text: str | None, props, by_name) -> tuple[tuple[Property, ...], bool]:
    if text is None or text.strip() == "*":
        return props, False
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise bad("$select has an empty item")
    for name in names:
        if name not in by_name:
            if "/" in name or "(" in name:
                raise unsupported(f"$select={name}: only the entity's own properties can be selected")
            raise _unknown(name)
    chosen = set(names)
    return tuple(p for p in props if p.name in chosen), True


MAX_ORDER = 4  # properties in $orderby besides the key


def _orderby(text: str | None, by_name) -> tuple[tuple[Property, bool], ...]:
    """The order of the rows: $orderby's properties, then the key's columns not among them (in
    the last one's direction), so that every row has one place and a page can start after one.
    By the key alone it is the (companyid, userid, courseid) index's order: O(page) at any depth;
    by another property every page sorts the company's matching rows."""
    items: list[tuple[Property, bool]] = []
    for item in (text or "").split(",") if text is not None else []:
        words = item.split()
        if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise bad(f"$orderby: cannot read '{item.strip()[:100]}'")
        if words[0] not in by_name:
            if "/" in words[0] or "(" in words[0]:
                raise unsupported(f"$orderby: {words[0][:100]}: only the entity's own properties can order it")
            raise _unknown(words[0])
        if any(p.name == words[0] for p, _ in items):
            raise bad(f"$orderby names {words[0]} twice")
        items.append((by_name[words[0]], len(words) == 2 and words[1].lower() == "desc"))
    if len([p for p, _ in items if p.name not in KEY]) > MAX_ORDER:
        raise bad(f"$orderby takes at most {MAX_ORDER} properties besides userid and courseid")
    last = items[-1][1] if items else False
    return tuple(items) + tuple((by_name[k], last) for k in KEY if all(p.name != k for p, _ in items))


def _count_or_int(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    if not _DIGITS.fullmatch(text.strip()):
        raise bad(f"{name} must be a non-negative integer, not '{text[:50]}'")
    return int(text)


def _boolean(name: str, text: str | None) -> bool:
    if text is None:
        return False
    if text.strip().lower() not in ("true", "false"):
        raise bad(f"{name} must be true or false, not '{text[:50]}'")
    return text.strip().lower() == "true"


def _format(text: str | None, accept: str | None) -> tuple[str, bool]:
    """(odata.metadata level, IEEE754Compatible) from $format, else the first JSON type of Accept."""
    media = text
    if media is None:
        for part in (accept or "").split(","):
            if part.strip().lower().startswith(("application/json", "*/*", "application/*")):
                media = part
                break
        media = media or "json"
    kind, *parameters = [p.strip() for p in media.split(";")]
    if kind.lower() not in ("json", "application/json", "*/*", "application/*"):
        raise ODataError(406, "notacceptable", f"The feed answers in JSON (application/json), not {kind[:100]!r}")
    values = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        values[name.strip().lower()] = value.strip().lower()
    metadata = values.get("odata.metadata", "minimal")
    if metadata not in ("minimal", "none", "full"):
        raise bad(f"odata.metadata={metadata[:50]}: give minimal, none or full")
    return metadata, values.get("ieee754compatible") == "true"


# -- $filter -----------------------------------------------------------------------------------------
def _filter(text: str | None, by_name: dict[str, Property], kind: str) -> tuple[str, list]:
    if text is None:
        return "", []
    if not text.strip():
        raise bad("$filter is empty")
    if len(text) > MAX_FILTER:
        raise bad(f"$filter is longer than {MAX_FILTER} characters")
    tree = _parse(text)
    operators, depth = _shape(tree)
    if operators > MAX_OPERATORS:
        raise bad(f"$filter has more than {MAX_OPERATORS} and/or/not: give a list of values with 'in'")
    if depth > MAX_DEPTH:
        raise bad(f"$filter nests and/or/not more than {MAX_DEPTH} deep")
    params: list = []
    return Filter(by_name, kind, params).condition(tree), params


def _parse(text: str):
    """The grammar's tree. A one-value list, `in (x)`, is read as the grammar's `(x,)` (the
    grammar reads `(x)` as parentheses)."""
    try:
        tokens = list(ODataLexer().tokenize(text))
        for i in range(len(tokens) - 1, -1, -1):
            solid = [j for j in range(i, min(i + 8, len(tokens))) if tokens[j].type != "WS"][:4]
            if len(solid) == 4 and [tokens[j].type for j in solid[:2]] == ["IN", "("] and tokens[solid[3]].type == ")":
                comma = Token()
                comma.type = comma.value = ","
                comma.lineno, comma.index = tokens[solid[3]].lineno, tokens[solid[3]].index
                tokens.insert(solid[3], comma)
        return ODataParser().parse(iter(tokens))
    except RecursionError:
        raise bad("$filter is nested too deeply") from None
    except (TokenizingException, ParsingException) as exc:
        where = f" at character {exc.token.index + 1}: {str(exc.token.value)[:40]!r}" if exc.token is not None else ""
        raise bad(f"$filter cannot be read{where or ' to its end'}") from None
    except ODataException as exc:
        raise bad(f"$filter: {exc}") from None
    except Exception as exc:  # the grammar's own failures on strange input: still the client's text
        raise bad(f"$filter cannot be read: {type(exc).__name__}") from None


def _shape(tree) -> tuple[int, int]:
    """(and/or/not in the tree, their nesting as the SQL has it), without recursion (a tree can
    be thousands deep): a chain of one operator is one level, as Filter writes it."""
    operators, deepest, stack = 0, 0, [(tree, 0, None)]
    while stack:
        node, depth, parent = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, ast.BoolOp):
            operators += 1
            level = depth if type(node.op) is parent else depth + 1
            stack += [(node.left, level, type(node.op)), (node.right, level, type(node.op))]
        elif isinstance(node, ast.UnaryOp):
            operators += 1
            stack.append((node.operand, depth + 1, ast.Not))
    return operators, deepest


class Filter:
    """One $filter tree → a SQL condition. Comparisons follow OData's null rules for the two
    nullable times (a stored 0): null compares equal only to null, and every order comparison
    with it is false."""

    def __init__(self, by_name: dict[str, Property], kind: str, params: list):
        self.by_name, self.kind, self.params = by_name, kind, params

    def condition(self, node) -> str:
        if isinstance(node, ast.BoolOp):
            word, kind, parts, stack = "AND" if isinstance(node.op, ast.And) else "OR", type(node.op), [], [node]
            while stack:  # a chain of one operator, in order, as one flat list
                item = stack.pop()
                if isinstance(item, ast.BoolOp) and type(item.op) is kind:
                    stack += [item.right, item.left]
                else:
                    parts.append(self.condition(item))
            return "(" + f" {word} ".join(parts) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return f"(NOT {self.condition(node.operand)})"
        if isinstance(node, ast.Boolean):
            return "1 = 1" if node.val.lower() == "true" else "1 = 0"
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Identifier | ast.Attribute):
            raise bad("$filter: a property alone is not a condition; compare it with a value")
        raise unsupported(f"$filter: {type(node).__name__} expressions are not supported")

    def call(self, node: ast.Call) -> str:
        """contains, startswith and endswith of a text property and a text value, exact (by
        code point, like eq): what Power Query folds Text.Contains, Text.StartsWith and
        Text.EndsWith into."""
        name = node.func.name
        if name not in _TEXT_FUNCTIONS or node.func.namespace:
            raise unsupported(f"$filter: the function {name}() is not supported (supported: "
                              f"{', '.join(_TEXT_FUNCTIONS)}; eq ne gt ge lt le and or not in)")
        if len(node.args) != 2:
            raise bad(f"$filter: {name}() takes a property and a value")
        prop, literal = self.prop(node.args[0]), node.args[1]
        if prop.edm != "Edm.String":
            raise bad(f"$filter: {name}() takes a text property, not {prop.name} ({prop.edm})")
        if isinstance(literal, ast.Null):
            return "1 = 0"
        if not isinstance(literal, ast._Literal):
            raise unsupported(f"$filter: {name}() compares a property with a value")
        value = self.value(prop, literal)
        sql = _TEXT_FUNCTIONS[name][self.kind].format(c=prop.column)
        self.params += [value] * sql.count("?")
        return f"({sql})"

    def prop(self, node) -> Property:
        if isinstance(node, ast.Identifier) and not node.namespace:
            if node.name not in self.by_name:
                raise _unknown(node.name)
            return self.by_name[node.name]
        if isinstance(node, ast.Attribute | ast.Identifier):
            raise bad("$filter: the entity has no navigation or complex properties")
        if isinstance(node, ast.Call):
            raise unsupported(f"$filter: {node.func.name}() is not supported on a property here: compare the "
                              "property itself with a value (or use contains, startswith, endswith)")
        raise unsupported("$filter: comparisons are between a property and a value")

    def compare(self, node: ast.Compare) -> str:
        left, right, comparator = node.left, node.right, node.comparator
        if isinstance(comparator, ast.In):
            prop = self.prop(left)
            values = right.val if isinstance(right, ast.List) else [right]
            if not values:
                raise bad("$filter: 'in' needs at least one value")
            if not all(isinstance(v, ast._Literal) and not isinstance(v, ast.List) for v in values):
                raise unsupported("$filter: 'in' takes a list of values")
            return self.among(prop, values)
        if isinstance(left, ast._Literal) and not isinstance(right, ast._Literal):
            left, right, comparator = right, left, _FLIP[type(comparator)]
        prop = self.prop(left)
        if not isinstance(right, ast._Literal) or isinstance(right, ast.List):
            raise unsupported("$filter: comparisons are between a property and a value")
        return self.compare_one(prop, comparator, right)

    def among(self, prop: Property, values: list) -> str:
        """`in`: one IN list of the values (null among them matches null)."""
        known = [self.value(prop, v) for v in values if not isinstance(v, ast.Null)]
        if prop.edm != "Edm.String":  # a number that no stored value can equal is left out
            known = [int(v) for v in known if v == v.to_integral_value()]
        parts = []
        if known:
            self.params += known
            listed = f"{self.column(prop)} IN ({', '.join('?' * len(known))})"
            parts.append(f"({prop.column} <> 0 AND {listed})" if prop.nullable else listed)
        if len(values) > len([v for v in values if not isinstance(v, ast.Null)]):
            parts.append(self.compare_one(prop, ast.Eq(), ast.Null()))
        return "(" + " OR ".join(parts) + ")" if parts else "1 = 0"

    def compare_one(self, prop: Property, comparator, literal) -> str:
        op = _OPS[type(comparator)]
        if isinstance(literal, ast.Null):
            if op not in ("=", "<>"):
                return "1 = 0"  # null in an order comparison is false
            if prop.nullable:
                return f"{prop.column} {op} 0"
            return "1 = 0" if op == "=" else "1 = 1"
        value = self.value(prop, literal)
        if prop.edm != "Edm.String":
            op, value = _whole(op, value)
            if op is None:  # a value no stored number can equal: eq is false, ne true (null's too)
                return "1 = 0" if value is False else "1 = 1"
        column = self.column(prop)
        self.params.append(value)
        if prop.nullable:  # a stored 0 is null: never equal to or ordered with a value, unequal to all
            return f"({prop.column} = 0 OR {column} <> ?)" if op == "<>" else f"({prop.column} <> 0 AND {column} {op} ?)"
        return f"{column} {op} ?"

    def column(self, prop: Property) -> str:
        return compared(prop, self.kind)

    def value(self, prop: Property, literal) -> str | Decimal:
        """The literal as text, or as an exact number in the column's unit (seconds, hundredths)."""
        name = f"{prop.name} ({prop.edm})"
        if prop.edm == "Edm.String":
            if not isinstance(literal, ast.String):
                raise bad(f"$filter: {name} is compared with a string in quotes")
            if "\x00" in literal.val:  # never stored; PostgreSQL refuses it in a parameter
                raise bad("$filter: a string holds a NUL character")
            return literal.val
        if prop.edm == "Edm.DateTimeOffset":
            if not isinstance(literal, ast.DateTime):
                raise bad(f"$filter: {name} is compared with a date and time with its offset, "
                          "like 2026-01-31T00:00:00Z")
            return _unix(literal.val)
        if not isinstance(literal, ast.Integer | ast.Float) or not literal.val.isascii():
            raise bad(f"$filter: {name} is compared with a number")
        try:
            number = Decimal(literal.val)
        except InvalidOperation:
            raise bad(f"$filter: '{literal.val[:50]}' is not a number") from None
        if isinstance(literal, ast.Integer) and not INT64[0] <= number <= INT64[1]:
            raise bad(f"$filter: {literal.val[:50]} is out of range for an Edm.Int64")
        number = _moderate(number)
        return number * 100 if prop.edm == "Edm.Decimal" else number


def compared(prop: Property, kind: str) -> str:
    """A property's column as filters compare it and pages are ordered by it: numbers as whole
    numbers of their unit (the percentage in hundredths), text by code point on every engine
    (OData's comparison, Python's), not by the column's collation (MariaDB's ignores case and
    trailing spaces)."""
    if prop.edm == "Edm.Decimal":
        return f"ROUND({prop.column} * 100)"
    if prop.edm != "Edm.String":
        return prop.column
    if kind == "postgresql":
        return f'{prop.column} COLLATE "C"'
    if kind == "mariadb":
        return f"BINARY {prop.column}"
    return prop.column


def _whole(op: str, value: Decimal) -> tuple[str | None, int | bool]:
    """A comparison of a whole-number column with an exact value, as one with a whole number
    (every engine compares those exactly; SQLite has no decimals): gt 2.5 is gt 2, ge 2.5 is ge 3.
    (None, False/True) when eq can never hold. Bounds beyond any stored value are clamped."""
    whole = value == value.to_integral_value()
    if op in ("=", "<>"):
        return (op, _clamp(value)) if whole else (None, op == "<>")
    rounded = value.to_integral_value(ROUND_FLOOR if op in (">", "<=") else ROUND_CEILING)
    return op, _clamp(rounded)


def _moderate(number: Decimal) -> Decimal:
    """A literal with an extreme exponent (1e-99999999, 1e400) as one that compares the same with
    every stored number (all within ±2^62 and whole in hundredths): arithmetic on it stays cheap
    and never overflows."""
    if number.is_zero() or -30 <= number.adjusted() <= 30:
        return number
    sign = -1 if number.is_signed() else 1
    return Decimal(sign) * (Decimal("1e30") if number.adjusted() > 30 else Decimal("1e-30"))


def _clamp(value: Decimal) -> int:
    return int(max(min(value, Decimal(2 ** 62)), Decimal(-(2 ** 62))))


def _unix(text: str) -> Decimal:
    """An Edm.DateTimeOffset literal → Unix seconds, exact (every digit of the fraction kept)."""
    fraction = _FRACTION.search(text)
    whole = text[:fraction.start()] + text[fraction.end():] if fraction else text
    try:
        moment = datetime.fromisoformat(whole.upper())
    except ValueError:
        raise bad(f"$filter: '{text[:50]}' is not a valid date and time") from None
    if moment.tzinfo is None:
        raise bad(f"$filter: {text[:50]} has no offset; an Edm.DateTimeOffset needs one (Z or +hh:mm)")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return Decimal(delta.days * 86400 + delta.seconds) + (Decimal("0" + fraction.group()) if fraction else 0)
