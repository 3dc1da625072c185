"""Unit tests of the protocol building blocks, no database: PHP parameter decoding (protocol.md
2.2), parameter validation (6), return cleaning (7), JSON (10) and XML (11) rendering."""

import pytest

from webservice import render
from webservice.errors import InvalidParameterException, MoodleException, WebserviceAccessException
from webservice.external import (
    clean_email,
    clean_returns,
    multiple,
    single,
    strip_tags,
    validate_parameters,
    value,
)
from webservice.phpparams import parse_pairs, php_parameters

PROGRESS_PARAMS = single({"limit": value("PARAM_INT", required=False, default=100),
                          "offset": value("PARAM_INT", required=False, default=0)})
SHORTNAMES = single({"serviceshortnames": multiple(value("PARAM_ALPHANUMEXT"), required=False, default=[])})
XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" ?>\n'


def decode(query: str) -> dict:
    return php_parameters(parse_pairs(query))


def param_error(schema: dict, raw: dict) -> str:
    """The debuginfo of the invalid_parameter_exception that validation raises."""
    with pytest.raises(InvalidParameterException) as info:
        validate_parameters(schema, raw)
    exc = info.value
    assert (exc.exception, exc.errorcode, exc.message) == (
        "invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected")
    return exc.debuginfo


def int_error(key: str, raw: str) -> str:
    return (f'{key} => Invalid parameter value detected: Invalid external api parameter: the value is "{raw}", '
            'the server was expecting "int" type')


# -- 2.2 PHP bracket encoding -------------------------------------------------------------------
@pytest.mark.parametrize("query, expected", [
    ("limit=5", {"limit": "5"}),
    ("limit=5&limit=10", {"limit": "10"}),
    ("ids[]=2&ids[]=5", {"ids": ["2", "5"]}),
    ("ids[0]=2&ids[1]=5", {"ids": {"0": "2", "1": "5"}}),
    ("users[0][name]=bob", {"users": {"0": {"name": "bob"}}}),
    ("a[x]=1&a=2", {"a": "2"}),
    ("a=2&a[x]=1", {"a": {"x": "1"}}),
    ("a.b=1", {"a_b": "1"}),
    ("a b=1", {"a_b": "1"}),
    ("a+b=1", {"a_b": "1"}),  # `+` is a space in names too
])
def test_php_bracket_decoding(query, expected):
    assert decode(query) == expected


@pytest.mark.parametrize("query, expected", [
    ("v=a+b%2Bc", {"v": "a b+c"}),
    ("v=Jos%C3%A9", {"v": "José"}),
    ("v=%FFx", {"v": "\ufffdx"}),  # invalid UTF-8 becomes U+FFFD
    ("n%C3%A9=1", {"né": "1"}),
    ("v=", {"v": ""}),
    ("v", {"v": ""}),
])
def test_percent_and_utf8_decoding(query, expected):
    assert decode(query) == expected


# -- 6. PARAM_INT and other validation ----------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("0", 0), ("7", 7), ("-5", -5), ("1000", 1000),
    ("9223372036854775807", 9223372036854775807), ("-9223372036854775808", -9223372036854775808)])
def test_param_int_accepts_canonical_int64(raw, expected):
    assert validate_parameters(PROGRESS_PARAMS, {"limit": raw}) == {"limit": expected, "offset": 0}


@pytest.mark.parametrize("raw", ["5a", " 5", "5 ", "+5", "05", "00", "-0", "5.0", "1e3", "", "0x10", "٣",
                                 "9223372036854775808", "-9223372036854775809"])
def test_param_int_rejects_everything_else(raw):
    assert param_error(PROGRESS_PARAMS, {"offset": raw}) == int_error("offset", raw)


@pytest.mark.parametrize("raw", [["5"], {"0": "5"}, {}])
def test_param_int_rejects_arrays(raw):
    assert param_error(PROGRESS_PARAMS, {"limit": raw}) == (
        "limit => Invalid parameter value detected: Scalar type expected, array or object received.")


def test_defaults_and_description_order():
    assert validate_parameters(PROGRESS_PARAMS, {}) == {"limit": 100, "offset": 0}
    assert list(validate_parameters(PROGRESS_PARAMS, {"offset": "3", "limit": "4"})) == ["limit", "offset"]


def test_unknown_keys_are_listed_in_order_of_appearance():
    assert param_error(PROGRESS_PARAMS, {"a": "1", "limit": "5", "b": "2"}) == (
        "Unexpected keys (a, b) detected in parameter array.")
    assert param_error(PROGRESS_PARAMS, {"zz": "1"}) == "Unexpected keys (zz) detected in parameter array."


def test_a_bad_described_key_is_reported_before_unknown_keys():
    assert param_error(PROGRESS_PARAMS, {"a": "1", "limit": "x"}) == int_error("limit", "x")


def test_list_parameters_take_values_in_order_and_alphanumext():
    ok = {"serviceshortnames": {"1": "b_2", "0": "A-z9", "x": ""}}
    assert validate_parameters(SHORTNAMES, ok) == {"serviceshortnames": ["b_2", "A-z9", ""]}
    assert validate_parameters(SHORTNAMES, {"serviceshortnames": ["x"]}) == {"serviceshortnames": ["x"]}
    assert validate_parameters(SHORTNAMES, {}) == {"serviceshortnames": []}
    for bad in ({"serviceshortnames": "abc"}, {"serviceshortnames": {"0": "a b"}},
                {"serviceshortnames": {"0": "é"}}, {"serviceshortnames": {"0": "a.b"}}):
        param_error(SHORTNAMES, bad)


# -- 7. return cleaning -------------------------------------------------------------------------
@pytest.mark.parametrize("raw, cleaned", [
    ("Intro to <b>HTML</b>", "Intro to HTML"),
    ("a < b", "a < b"),
    ("x<y", "x"),
    ("a<", "a<"),
    ("1 <2 and 3<=4", "1 <2 and 3<=4"),
    ("<!-- note -->Text<?php x ?>", "Text"),
    ('<a href="x">link</a> & <br/>more', "link & more"),
    ("unterminated <i tag", "unterminated "),
    ('<span lang="en" class="multilang">Hi</span><span lang="de" class="multilang">Hallo</span>',
     '<span lang="en" class="multilang">Hi</span><span lang="de" class="multilang">Hallo</span>'),
    ('<span class="multilang" lang="pt_br">Oi</span>', '<span class="multilang" lang="pt_br">Oi</span>'),
    ('<lang lang="fr-ca">Salut</lang>', '<lang lang="fr-ca">Salut</lang>'),
    ('<span lang="EN" class="multilang">x</span>', "x</span>"),  # upper case is not a multilang tag
    ('<span class="other">x</span>', "x</span>"),
    ("O'Brien & Müller \"Ltd\"", "O'Brien & Müller \"Ltd\""),
])
def test_strip_tags_rule_t(raw, cleaned):
    assert strip_tags(raw) == cleaned


@pytest.mark.parametrize("raw, cleaned", [
    ("o'brien@example.com", "o'brien@example.com"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("", ""),
    ("jörg@example.com", ""),
    ("user@", ""),
    ("0c1fd1e0f1a2b3c4d5e6f7a8b9c0d1e2", ""),
    ("a@-example.com", ""),
    ("a b@example.com", ""),
    ("<a@example.com>", ""),
    ("a@example.com\n", ""),
])
def test_clean_email_pattern_e(raw, cleaned):
    assert clean_email(raw) == cleaned


def test_clean_returns_rebuilds_from_the_description():
    schema = multiple(single({"id": value("PARAM_INT", required=False), "name": value("PARAM_TEXT", required=False),
                              "email": value("PARAM_EMAIL", required=False),
                              "pct": value("PARAM_FLOAT", required=False), "ok": value("PARAM_BOOL", required=False)}))
    data = [{"pct": 100.0, "name": "<b>A</b>", "extra": 1, "id": "7", "email": "jörg@example.com", "ok": 1},
            {"pct": 66.67}, {"pct": 0.0, "name": "x"}]
    changed = []
    cleaned = clean_returns(schema, data, changed)
    assert cleaned == [{"id": 7, "name": "A", "email": "", "pct": 100, "ok": True}, {"pct": 66.67},
                       {"name": "x", "pct": 0}]
    assert list(cleaned[0]) == ["id", "name", "email", "pct", "ok"]
    assert type(cleaned[0]["pct"]) is int and type(cleaned[2]["pct"]) is int
    assert changed == [("name", "<b>A</b>"), ("email", "jörg@example.com")]
    assert render.to_json(cleaned) == (b'[{"id":7,"name":"A","email":"","pct":100,"ok":true},{"pct":66.67},'
                                       b'{"name":"x","pct":0}]')


# -- 10. JSON ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, encoded", [
    ("http://a/b", b'"http:\\/\\/a\\/b"'),
    ("Jos\u00e9 \u00c9", b'"Jos\\u00e9 \\u00c9"'),
    ("\u20ac\uffff", b'"\\u20ac\\uffff"'),
    ("\U0001F600", b'"\\ud83d\\ude00"'),
    ('q"b\\', b'"q\\"b\\\\"'),
    ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
    ("\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
    ("\x7f&'<>", b"\"\x7f&'<>\""),
])
def test_json_strings(text, encoded):
    assert render.to_json(text) == encoded


@pytest.mark.parametrize("data, encoded", [
    ([], b"[]"), ({}, b"[]"), ([{}], b"[[]]"), ({"a": {}}, b'{"a":[]}'),
    ({"b": 1, "a": [1, -2]}, b'{"b":1,"a":[1,-2]}'),
    ([66.67, 12.5, 0.1, True, False, None], b"[66.67,12.5,0.1,true,false,null]"),
])
def test_json_structures(data, encoded):
    assert render.to_json(data) == encoded


def test_json_error_documents():
    exc = InvalidParameterException('limit => a "b" /c')
    base = b'{"exception":"invalid_parameter_exception","errorcode":"invalidparameter",' \
           b'"message":"Invalid parameter value detected"'
    assert render.error_json(exc, False) == base + b"}"
    assert render.error_json(exc, True) == base + b',"debuginfo":"limit => a \\"b\\" \\/c"}'
    plain = MoodleException("invalidtoken", "Invalid token - token not found")
    assert render.error_json(plain, True) == (
        b'{"exception":"moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}')


# -- 11. XML ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, escaped", [
    ("Data Protection & GDPR", "Data Protection &amp; GDPR"),
    ("&amp; &lt;", "&amp;amp; &amp;lt;"),
    ("<b>\"O'Brien\"</b>", "&lt;b&gt;&quot;O'Brien&quot;&lt;/b&gt;"),
    ("a\x00b\x08c\x0bd\x0ce\x0ef\x1fg\ufffeh\uffffi", "abcdefghi"),
    ("tab\tlf\ncr\r", "tab\tlf\ncr\r"),
])
def test_xml_escaping(text, escaped):
    assert render.xml_escape(text) == escaped


def test_xml_success_document():
    schema = multiple(single({"id": value("PARAM_INT", required=False), "name": value("PARAM_TEXT", required=False),
                              "pct": value("PARAM_FLOAT", required=False), "ok": value("PARAM_BOOL", required=False),
                              "tags": multiple(value("PARAM_TEXT"), required=False)}))
    body = render.to_xml([{"id": 26, "name": "José & <Co>", "pct": 66.67, "ok": False}], schema)
    assert body == XML_HEAD + (
        '<RESPONSE>\n<MULTIPLE>\n<SINGLE>\n'
        '<KEY name="id"><VALUE>26</VALUE>\n</KEY>\n'
        '<KEY name="name"><VALUE>José &amp; &lt;Co&gt;</VALUE>\n</KEY>\n'
        '<KEY name="pct"><VALUE>66.67</VALUE>\n</KEY>\n'
        '<KEY name="ok"><VALUE>0</VALUE>\n</KEY>\n'
        '<KEY name="tags"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n'
        '</SINGLE>\n</MULTIPLE>\n</RESPONSE>\n').encode()
    assert "José".encode() in body and b"&#" not in body
    assert render.to_xml([], schema) == XML_HEAD + b"<RESPONSE>\n<MULTIPLE>\n</MULTIPLE>\n</RESPONSE>\n"


def test_xml_error_documents():
    assert render.error_xml(MoodleException("invalidtoken", "Invalid token - token not found"), True) == XML_HEAD + (
        b'<EXCEPTION class="moodle_exception">\n<ERRORCODE>invalidtoken</ERRORCODE>\n'
        b"<MESSAGE>Invalid token - token not found</MESSAGE>\n</EXCEPTION>\n")
    exc = WebserviceAccessException('IP:<1> & "x" \'y\'')
    head = XML_HEAD + (b'<EXCEPTION class="webservice_access_exception">\n<ERRORCODE>accessexception</ERRORCODE>\n'
                       b"<MESSAGE>Access control exception</MESSAGE>\n")
    assert render.error_xml(exc, False) == head + b"</EXCEPTION>\n"
    assert render.error_xml(exc, True) == head + (
        b"<DEBUGINFO>IP:&lt;1&gt; &amp; &quot;x&quot; 'y'</DEBUGINFO>\n</EXCEPTION>\n")
    quoted = MoodleException("x", "Can't find data record in database table user.")
    assert b"<MESSAGE>Can't find data record in database table user.</MESSAGE>" in render.error_xml(quoted, False)
