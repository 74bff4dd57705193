"""The column-wise fast path must be indistinguishable from the row-at-a-time reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stori_pipeline.csv_blocks import Columns
from stori_pipeline.records import Rejection, RowValidator, Transaction

IDS = st.one_of(
    st.integers(0, 40).map(str),  # small range: duplicates happen often
    st.sampled_from(["", " 7 ", "\x07x", "a" * 64, "a" * 65, "id\u00a0nbsp", "é"]),
    # Numeric-looking ids that are not the number's own spelling: never a duplicate of it.
    st.sampled_from(["07", "00", "+7", "7_0", "\u0667", "9" * 15, "9" * 16, "1" + "0" * 15]),
)
DATES = st.sampled_from(
    ["7/15", " 7/15\t", "2/29", "2/30", "12/31/2024", "2024-02-29", "2023-02-29", "13/1", "x", ""]
)
AMOUNTS = st.one_of(
    st.integers(-(10**7), 10**7).map(lambda c: f"{c / 100:.2f}"),
    st.sampled_from(["+60.5", "-10.3", "0", "-0", " 5 ", "1.234", "1,000", "$5", "1e3", "", "7."]),
    st.sampled_from(["123456789012345", "1234567890123456", "5\n6"]),
)
ACCOUNTS = st.sampled_from(["A", "B", "acc_1", "bad!", "", " C "])


@st.composite
def records(draw: st.DrawFn) -> list[list[str]]:
    """A batch of 4-column records, occasionally with a wrong field count."""
    rows = []
    for _ in range(draw(st.integers(0, 120))):
        row = [draw(IDS), draw(DATES), draw(AMOUNTS), draw(ACCOUNTS)]
        if draw(st.integers(0, 30)) == 0:
            row.append("extra")
        rows.append(row)
    return rows


def _run(batches: list[list[list[str]]], *, reference: bool, with_account: bool) -> tuple:
    header = ["Id", "Date", "Amount"] + (["AccountId"] if with_account else [])
    rejected: list[Rejection] = []
    validator = RowValidator(header, default_account="Z", on_reject=rejected.append)
    accepted: list[Transaction] = []
    line = 1
    for batch in batches:
        rows = [r if with_account else r[:2] + r[2:3] + r[4:] for r in batch]
        lines = list(range(line + 1, line + 1 + len(rows)))
        line += len(rows)
        if reference:
            validator.rows_read += len(rows)
            validator._feed_rows(rows, lines, True, accepted)
            validator.rows_accepted = validator.rows_read - validator.rows_rejected
        else:
            accepted += validator.feed(rows, lines)
    return (
        accepted,
        rejected,
        validator.ledger.summaries(),
        validator.rows_read,
        validator.rows_accepted,
    )


def _rows(ids: range, account: str) -> list[list[str]]:
    """Good records of ``account``, one per id, all of one date and amount."""
    return [[str(i), "7/15", "1.00", account] for i in ids]


def _fed(
    header: list[str], batches: list[list[list[str]]], rejected: list[Rejection]
) -> RowValidator:
    """A validator (no default account) fed the batches in order, lines counted from 2."""
    validator = RowValidator(header, default_account=None, on_reject=rejected.append)
    line = 1
    for batch in batches:
        validator.feed(batch, list(range(line + 1, line + 1 + len(batch))), collect=False)
        line += len(batch)
    return validator


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=4), st.booleans())
def test_fast_path_equals_reference(batches: list[list[list[str]]], with_account: bool) -> None:
    """Same accepted rows, rejections (in order), summaries and counts as the row path."""
    assert _run(batches, reference=False, with_account=with_account) == _run(
        batches, reference=True, with_account=with_account
    )


def _as_columns(rows: list[list[str]], width: int) -> Columns:
    """The rows as the block reader holds them: columns of ``width``, the others aside."""
    positions = [i for i, row in enumerate(rows) if len(row) == width]
    odd = {i: row for i, row in enumerate(rows) if len(row) != width}
    columns = [[rows[i][k] for i in positions] for k in range(width)]
    held = Columns(columns, len(rows), odd)
    assert list(held.positions) == positions
    return held


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=4))
def test_columns_are_validated_as_the_same_records(batches: list[list[list[str]]]) -> None:
    """Records held as ``Columns`` (with rows of another width aside) give the same results."""
    header = ["Id", "Date", "Amount", "AccountId"]
    results = []
    for as_columns in (False, True):
        rejected: list[Rejection] = []
        validator = RowValidator(header, default_account=None, on_reject=rejected.append)
        accepted: list[Transaction] = []
        line = 1
        for batch in batches:
            lines = range(line + 1, line + 1 + len(batch))
            line += len(batch)
            accepted += validator.feed(_as_columns(batch, 4) if as_columns else batch, lines)
        results.append((accepted, rejected, validator.ledger.summaries(), validator.rows_read))
    assert results[0] == results[1]


def _row_path_forbidden(*_args: object) -> None:
    raise AssertionError("a clean batch reached the row-at-a-time path")


def test_clean_batches_take_the_column_path() -> None:
    """A clean multi-account batch is accepted whole by the column path (no silent fallback)."""
    header = ["TransactionId", "Date", "Amount", "AccountId"]
    validator = RowValidator(header, default_account=None, on_reject=lambda _r: None)
    validator._feed_rows = _row_path_forbidden  # type: ignore[method-assign]
    rows = [[str(i), f"{i % 12 + 1}/1", f"{i}.5", f"A{i % 3}"] for i in range(100)]
    accepted = validator.feed(rows, list(range(2, 102)))
    assert len(accepted) == 100
    assert {s.account_id: s.transaction_count for s in validator.ledger.summaries()} == {
        "A0": 34,
        "A1": 33,
        "A2": 33,
    }


def test_only_bad_rows_reach_the_row_path() -> None:
    """The column path hands exactly the rejected rows, in file order, to the row path."""
    header = ["TransactionId", "Date", "Amount", "AccountId"]
    rejected: list[Rejection] = []
    validator = RowValidator(header, default_account=None, on_reject=rejected.append)
    handed: list[int] = []
    row_path = validator._feed_rows

    def spy(records: list[list[str]], lines: list[int], *args: object) -> None:
        handed.extend(lines)
        row_path(records, lines, *args)  # type: ignore[arg-type]

    validator._feed_rows = spy  # type: ignore[assignment,method-assign]
    rows = [[str(i), "7/15", "1.00", "A"] for i in range(60)]
    rows[5][1] = "2/30"  # invalid_date
    rows[9] = [*rows[9], "x"]  # field_count
    rows[20][0] = "3"  # duplicate of an earlier row in the batch
    rows[33][2] = "1.234"  # invalid_amount
    rows[41][3] = "bad!"  # invalid_account
    rows[50][0] = ""  # invalid_id
    validator.feed(rows, list(range(2, 62)))
    bad = [7, 11, 22, 35, 43, 52]
    assert handed == bad
    assert [r.line for r in rejected] == bad
    assert [r.code for r in rejected] == [
        "invalid_date",
        "field_count",
        "duplicate_id",
        "invalid_amount",
        "invalid_account",
        "invalid_id",
    ]


def test_numeric_ids_keep_their_spelling() -> None:
    """An all-numeric batch (int keys) then a mixed one: "7" repeats, "07" and "+7" do not."""
    header = ["Id", "Date", "Amount", "AccountId"]
    rejected: list[Rejection] = []
    validator = RowValidator(header, default_account=None, on_reject=rejected.append)
    numeric = [[str(i), "7/15", "1.00", f"A{i % 2}"] for i in range(40)]
    validator.feed(numeric, list(range(2, 42)), collect=False)
    mixed = [[tx_id, "7/15", "1.00", "A1"] for tx_id in ("07", "+7", "7", "\u0667", "x7", "7 ")]
    mixed += [[f"y{i}", "7/15", "1.00", "A0"] for i in range(20)]
    validator.feed(mixed, list(range(42, 42 + len(mixed))))
    # "7" (line 44) was accepted for A1 in the numeric batch; "7 " trims to "7" (line 47).
    assert [(r.line, r.id, r.code) for r in rejected] == [
        (44, "7", "duplicate_id"),
        (47, "7", "duplicate_id"),
    ]
    counts = sum(summary.transaction_count for summary in validator.ledger.summaries())
    assert counts == 40 + len(mixed) - 2


# Defects planted into an otherwise clean batch: the column path's scans for a few bad rows
# (list.index, a regex resuming after each odd line) and its deletes must find exactly them.
DEFECTS = st.sampled_from(
    [
        (0, ""),  # invalid_id
        (0, "07"),  # a valid id, not numeric: the batch's keys become strings
        (0, "\x07bell"),
        (1, "2/30"),  # invalid_date
        (1, "13/01"),
        (2, "5"),  # valid, but not two decimals (in a good row, or a bad row's)
        (2, "+60.5"),
        (2, "1.234"),  # invalid_amount
        (2, "$12.00"),
        (2, "1,000.00"),
        (2, " 7.00 "),
        (3, "bad account!"),  # invalid_account
        (4, "extra"),  # field_count
        (5, ""),  # duplicate: an earlier row's id and account
    ]
)


@st.composite
def mostly_clean(draw: st.DrawFn) -> list[list[str]]:
    """A batch of good two-decimal rows with a few planted defects, some in the same row."""
    start = draw(st.integers(0, 50))
    count = draw(st.integers(17, 300))
    rows = [
        [str(start + i), f"{i % 12 + 1}/{i % 28 + 1}", f"-{i % 97}.{i % 100:02d}", f"A{i % 3}"]
        for i in range(count)
    ]
    for _ in range(draw(st.integers(0, 20))):
        at = draw(st.integers(0, count - 1))
        column, text = draw(DEFECTS)
        if column == 4:
            rows[at] = [*rows[at], text]
        elif column == 5:
            earlier = rows[draw(st.integers(0, at))]
            rows[at][0], rows[at][3] = earlier[0], earlier[3]
        else:
            rows[at][column] = text
    return rows


@settings(max_examples=200, deadline=None)
@given(st.lists(mostly_clean(), min_size=1, max_size=3), st.booleans())
def test_fast_path_equals_reference_with_few_defects(
    batches: list[list[list[str]]], with_account: bool
) -> None:
    """Mostly clean batches (the usual file) give exactly what the row path gives."""
    assert _run(batches, reference=False, with_account=with_account) == _run(
        batches, reference=True, with_account=with_account
    )


def test_increasing_ids_are_still_checked_against_later_rows() -> None:
    """Batches of increasing ids skip the duplicate lookups; later rows still meet them.

    Old ids in a mostly increasing batch and in the row path are looked up among the skipped
    batches' ids; the row path's accepted id (200) counts as seen for a later batch.
    """
    header = ["TransactionId", "Date", "Amount", "AccountId"]

    batches = [
        # Lines 2..41: odd ids are A's, even ids B's.
        [[str(i), "7/15", "1.00", "AB"[(i - 1) % 2]] for i in range(1, 41)],
        _rows(range(41, 81), "A"),  # lines 42..81
        _rows(range(10, 13), "A") + _rows(range(81, 101), "A"),  # 82..104: 11 was A's
        # Lines 105..107, small: the row path. 5 was A's, not C's; 200 is new.
        [["5", "7/15", "1.00", "A"], ["5", "7/15", "1.00", "C"], ["200", "7/15", "1.00", "A"]],
        _rows(range(150, 250), "A"),  # 108..207: increasing, but 200 was accepted
        _rows(range(60, 70), "A") + _rows(range(300, 320), "A"),  # 208..237: 60..69 were
        # Lines 238..270: ids again within the batch: B's 325 is new (once), A's 330 is not.
        [
            *_rows(range(320, 340), "A"),
            ["325", "7/15", "1.00", "B"],
            ["330", "7/15", "1.00", "A"],
            ["325", "7/15", "1.00", "B"],
            *_rows(range(340, 350), "A"),
        ],
    ]
    rejected: list[Rejection] = []
    _fed(header, batches, rejected)
    assert [(r.line, r.id, r.code) for r in rejected] == [
        (83, "11", "duplicate_id"),
        (105, "5", "duplicate_id"),
        (158, "200", "duplicate_id"),
        *((208 + i, str(60 + i), "duplicate_id") for i in range(10)),
        (259, "330", "duplicate_id"),
        (260, "325", "duplicate_id"),
    ]
    assert _run(batches, reference=False, with_account=True) == _run(
        batches, reference=True, with_account=True
    )


def test_ids_kept_as_text_are_found_by_later_rows() -> None:
    """Batches of increasing ids of one width are kept as their text; later rows meet them.

    A few old ids in a later batch, and rows of the row path, are looked up in that text:
    the same (account, id) is a duplicate, the same id for another account or an id the
    batch skipped is not, and neither is an id of another width.
    """
    header = ["TransactionId", "Date", "Amount", "AccountId"]

    old = [("150", "A"), ("150", "B"), ("1050", "B"), ("1050", "A"), ("199", "A")]
    old += [("100", "A"), ("99", "A"), ("250", "A"), ("1002", "B"), ("1003", "B")]
    batches = [
        _rows(range(100, 200), "A"),  # lines 2..101
        _rows(range(1000, 1100, 2), "B"),  # lines 102..151: even ids only
        # Lines 152..161, then 162..191.
        [[tx_id, "7/15", "1.00", account] for tx_id, account in old]
        + _rows(range(2000, 2030), "A"),
        [["1098", "7/15", "1.00", "B"], ["1099", "7/15", "1.00", "B"]],  # the row path: 192, 193
    ]
    rejected: list[Rejection] = []
    validator = RowValidator(header, default_account=None, on_reject=rejected.append)
    validator.feed(batches[0], list(range(2, 102)), collect=False)
    validator.feed(batches[1], list(range(102, 152)), collect=False)
    assert [type(ids) for ids, _accounts in validator._deferred] == [str, str]
    validator.feed(batches[2], list(range(152, 192)), collect=False)
    validator.feed(batches[3], [192, 193], collect=False)
    assert [(r.line, r.id, r.code) for r in rejected] == [
        (152, "150", "duplicate_id"),
        (154, "1050", "duplicate_id"),
        (156, "199", "duplicate_id"),
        (157, "100", "duplicate_id"),
        (160, "1002", "duplicate_id"),
        (192, "1098", "duplicate_id"),
    ]
    assert _run(batches, reference=False, with_account=True) == _run(
        batches, reference=True, with_account=True
    )


def test_an_id_of_another_width_is_not_compared_as_text() -> None:
    """An id "1000" among three-digit ids sorts between "100" and "101" as text, not as ints.

    The batch also holds a bad row (set aside first); the id of another width is a good
    row's, so the batch's ids are not of one width, and a later "1000" is still found.
    """
    header = ["TransactionId", "Date", "Amount", "AccountId"]
    ids = ["100", "1000", *map(str, range(101, 121))]
    batch = [[tx_id, "7/15", "1.00", "A"] for tx_id in ids]
    batch[5][1] = "2/30"  # "104": invalid_date
    batches = [batch, [["1000", "7/15", "2.00", "A"], ["104", "7/15", "2.00", "A"]]]
    rejected: list[Rejection] = []
    _fed(header, batches, rejected)
    assert [(r.line, r.id, r.code) for r in rejected] == [
        (7, "104", "invalid_date"),
        (24, "1000", "duplicate_id"),
    ]
    assert _run(batches, reference=False, with_account=True) == _run(
        batches, reference=True, with_account=True
    )


def test_a_mixed_batch_keeps_later_increasing_batches_on_the_shortcut() -> None:
    """An id like "07" among numeric ones: their numbers still bound the later batches.

    Batch 2 starts at 30, which batch 1 (mixed, keyed row by row) accepted: a duplicate.
    The batches after it increase past every accepted id and are kept aside, not put into
    the seen ids one by one.
    """
    header = ["Id", "Date", "Amount", "AccountId"]

    batches = [[["07", "7/15", "1.00", "A"], *_rows(range(1, 31), "A")], _rows(range(30, 60), "A")]
    batches += [_rows(range(start, start + 50), "A") for start in range(100, 2100, 50)]
    assert _run(batches, reference=False, with_account=True) == _run(
        batches, reference=True, with_account=True
    )
    rejected: list[Rejection] = []
    validator = _fed(header, batches, rejected)
    assert [(r.line, r.id, r.code) for r in rejected] == [(33, "30", "duplicate_id")]
    # The shortcut is internal; what it saves is these keys (2,000 rows deferred).
    assert len(validator._seen) < 100


def test_summaries_handed_out_do_not_change_when_the_row_path_adds_rows() -> None:
    """Small batches take the row path, which writes the buckets itself: it freezes them too."""
    header = ["Id", "Date", "Amount", "AccountId"]
    validator = RowValidator(header, default_account=None, on_reject=lambda _r: None)
    validator.feed([["1", "7/15", "1.00", "A"]], [2], collect=False)
    before = validator.ledger.summaries()
    validator.feed([["2", "7/15", "2.00", "B"], ["3", "7/15", "3.00", "A"]], [3, 4], collect=False)
    assert len(before) == 1
    assert before[0].transaction_count == 1
    after = validator.ledger.summaries()
    assert [(s.account_id, s.transaction_count) for s in after] == [("A", 2), ("B", 1)]
