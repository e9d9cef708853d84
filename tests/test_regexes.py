"""Users' regexes on RE2 (image_updater.regexes): one test per syntax difference from Python's ``re`` that
docs/policies.md lists, the match API (spans, groups, non-ASCII text), the literal-prefix prefilter
against RE2 itself, and the errors (InvalidPolicy naming the pattern, RE2's reason and a hint)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image_updater.errors import InvalidPolicy
from image_updater.policies import TagInfo, parse_policy
from image_updater.regexes import compile_user_regex, literal_prefix


def found(pattern: str, text: str) -> str | None:
    match = compile_user_regex(pattern).search(text)
    return None if match is None else match.group()


# (pattern, text, what RE2 finds): where Python's re would answer differently, or refuse
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    sorted(
        [
            ("^a{,3}$", "a{,3}", "a{,3}"),  # {,n} is literal text (Python: 0 to 3 repetitions)
            ("^a{,3}$", "aa", None),
            ("[[:alpha:]]+", "12ab3", "ab"),  # POSIX classes (Python: a set of '[:alph' and a ']')
            ("[[:digit:]]+", "v12", "12"),
            ("\\pL+", "12ab3", "ab"),  # Unicode classes (Python: an error)
            ("\\p{Greek}", "a\u03b1", "\u03b1"),
            ("\\x{41}", "zA", "A"),  # \x{...} (Python: an error)
            ("\\QA.B\\E", "AxB A.B", "A.B"),  # \Q...\E quoting (Python: an error)
            ("a$", "a\n", None),  # $ is the end of the text (Python: also before a final newline)
            ("a\\z", "a", "a"),  # \z is the end (Python's \Z is refused)
            ("\\d+", "\u0661\u0662", None),  # \d, \w, \s, \b are ASCII (Python: any script's digits)
            ("\\w+", "\u00e9t\u00e9", "t"),
            ("(?U)a+", "aaa", "a"),  # (?U) swaps greedy and lazy, as in Go
            ("(?U)a+?", "aaa", "aaa"),
            ("(?i)ABC", "xabc", "abc"),  # the flags Go has work as in Python
            ("(?s)a.b", "a\nb", "a\nb"),
            ("(?m)^b$", "a\nb", "b"),
            ("a|ab", "ab", "a"),  # leftmost-first, as in Python and Go (POSIX leftmost-longest: "ab")
            ("\\123", "S", "S"),  # octal escapes, as in Python
        ]
    ),
)
def test_re2_syntax(pattern: str, text: str, expected: str | None) -> None:
    assert found(pattern, text) == expected


def test_leftmost_first_groups_are_those_python_and_go_report() -> None:
    match = compile_user_regex("(a|ab)(c|bcd)").search("abcd")
    assert match is not None and (match.group(1), match.group(2)) == ("a", "bcd")


@pytest.mark.parametrize(
    ("pattern", "hint"),
    sorted(
        [
            ("(a)\\1", "backreferences are not supported"),
            ("(?P<x>a)(?P=x)", "backreferences (?P=name) are not supported"),
            ("a(?=b)", "lookahead is not supported"),
            ("a(?!b)", "lookahead is not supported"),
            ("(?<=a)b", "lookbehind is not supported"),
            ("(?<!a)b", "lookbehind is not supported"),
            ("(?>a+)b", "atomic groups are not needed"),
            ("a++b", "possessive quantifiers are not needed"),
            ("a*+b", "possessive quantifiers are not needed"),
            ("(a)?(?(1)b|c)", "conditionals are not supported"),
            ("a(?#comment)", "comments are not supported"),
            ("(?x) a b", "verbose mode (?x) is not supported"),
            ("a\\Z", "write \\z or $ for the end of the tag"),
            ("a{1001}", "a count may be at most 1000"),
            ("((((a{100}){100}){100}){100})", "a count may be at most 1000"),
            ("(?a)\\w", ""),
            ("\\u0041", ""),
            ("\\N{DIGIT ONE}", ""),
            ("\\C", "\\C (any byte) is not supported"),
            ("(unclosed", ""),
            ("[", ""),
        ]
    ),
)
def test_python_only_syntax_is_refused_with_re2_reason_and_a_hint(pattern: str, hint: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        compile_user_regex(pattern, "filter")
    message = str(caught.value)
    assert message.startswith(f"invalid filter {pattern!r}: ")
    assert hint in message
    # through a policy: the same error, for the regex and for the filter
    with pytest.raises(InvalidPolicy, match="invalid regex"):
        parse_policy(f"regex:{pattern}")
    with pytest.raises(InvalidPolicy, match="invalid filter"):
        parse_policy("alphabetical", {"filter": pattern})


def test_refused_patterns_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidPolicy):
        compile_user_regex("(a)\\1")
    assert capfd.readouterr().err == ""  # RE2 logs refused patterns on stderr unless told not to


@pytest.mark.parametrize("spelling", ["(?P<ts>\\d+)", "(?<ts>\\d+)"])
def test_both_named_group_spellings(spelling: str) -> None:
    regex = compile_user_regex(f"^main-{spelling}$")
    assert dict(regex.groupindex) == {"ts": 1} and regex.groups == 1
    match = regex.search("main-42")
    assert match is not None and match.group("ts") == "42" and match.group(1) == "42"
    policy = parse_policy("numerical", {"filter": f"^main-{spelling}$", "extract": "$ts"})
    assert policy.choose([TagInfo("main-9"), TagInfo("main-10"), TagInfo("pr-99")]) == TagInfo("main-10")


def test_spans_of_non_ascii_text_are_character_offsets() -> None:
    regex = compile_user_regex("(\u00e9+)(x)?")
    spans = regex.spans("a\u00e9\u00e9bc")
    assert spans == [(1, 3), (1, 3), (-1, -1)]
    match = regex.search("a\u00e9\u00e9bc")
    assert match is not None and match.group(1) == "\u00e9\u00e9" and match.group(2) is None
    assert regex.search("\ud800\u00e9") is None  # a lone surrogate (from JSON) is no text to search
    assert not regex.found_in("\ud800\u00e9")


def test_an_invalid_pattern_string_is_an_invalid_policy() -> None:
    with pytest.raises(InvalidPolicy, match="not valid text"):
        compile_user_regex("\ud800")


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("^main-", "main-"), ("^main-[0-9a-f]+", "main-"), ("^ab?", "a"), ("^ab*", "a"), ("^ab{2}", "a"),
        ("^a+", ""), ("main-", ""), ("^main-|^pr-", ""), ("^(main)", ""), ("^v\\d", "v"), ("^", ""),
        ("^a.b", "a"), ("(?i)^main", ""), ("^main(?i)x", "main"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


_PIECES = st.sampled_from(["^", "a", "b", "-", "a?", "b*", "a+", "(a|b)", "[ab]", ".", "$", "|", "(?i)", "A"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=6).map("".join), st.text("abAB-", max_size=8))
def test_property_prefix_prefilter_never_changes_an_answer(pattern: str, text: str) -> None:
    """The prefilter only skips texts RE2 would not match: compare with RE2's own wrapper."""
    import re2

    try:
        regex = compile_user_regex(pattern)
    except InvalidPolicy:
        return
    options = re2.Options()
    options.log_errors = False
    reference = re2.compile(pattern, options).search(text)
    assert regex.found_in(text) is (reference is not None)
    spans = regex.spans(text)
    assert (spans[0] if spans else None) == (reference.span() if reference else None)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=6).map("".join), st.text("abAB-é", max_size=8))
def test_property_public_api_fallback_gives_the_same_spans(pattern: str, text: str) -> None:
    """Where google-re2 lacks the internal program object the fast path uses, the public API answers."""
    import re2

    from image_updater.regexes import _public_searchers

    try:
        regex = compile_user_regex(pattern)
    except InvalidPolicy:
        return
    options = re2.Options()
    options.log_errors = False
    spans, found_in = _public_searchers(re2.compile(pattern, options), literal_prefix(pattern))
    assert spans(text) == regex.spans(text)
    assert found_in(text) is regex.found_in(text)
