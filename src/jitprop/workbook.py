"""The toy net's exercise as a live spreadsheet: one worksheet per learning rate whose step table
is all formulas (forward pass, errors, gradients, update), with native loss charts."""

import datetime
import math

import xlsxwriter
from xlsxwriter.utility import quote_sheetname, xl_rowcol_to_cell

from jitprop import io, toy
from jitprop.runs import lr_label, lr_text

__all__ = ["TABLE_COLUMNS", "read_sheet_runs", "write"]

# The step table's header: history.csv's own names, in its order (i1, i2, t1, t2 and η do not
# change from step to step, so they sit in the block above the table).
TABLE_COLUMNS = ["step", *toy.WEIGHTS, *toy.HIDDEN, *toy.OUTPUT, *toy.ERRORS, *toy.GRADS]
INPUTS = ["i1", "i2", "t1", "t2"]
# The block above the table: a label in column A, the value in column B, one per row from row 3.
TOP_LABELS = {
    **{name: name for name in INPUTS},
    "lr": "η",
    **{w: f"{w} at step 0" for w in toy.WEIGHTS},
}
TOP_ROW = 2
HEADER_ROW = TOP_ROW + len(TOP_LABELS) + 1
FIRST_STEP_ROW = HEADER_ROW + 1
MAX_ROWS = 1_048_576  # rows of a worksheet in Excel, and so in any xlsx
# Same config, same bytes: the creation date the file states is fixed (the date XlsxWriter
# also gives every member of the zip).
CREATED = datetime.datetime(1980, 1, 1, tzinfo=datetime.UTC)
OVERVIEW = "all rates"
MAX_SERIES = 255  # lines in one chart, in Excel


# --------------------------------------------------------------------------- formulas


def _sigmoid(x):
    """σ(x) = 1/(1+EXP(-x)).  For x < 0 it is written e^x/(1+e^x), the same number: EXP of a
    large argument is an error in a spreadsheet, where NumPy gives inf and σ = 0."""
    return f"IF({x}>=0,1/(1+EXP(-{x})),EXP({x})/(1+EXP({x})))"


def _forward(c, top):
    """The forward pass and the errors of one step: formulas on the cells `c` of its row and
    the block `top`, as the exercise writes them."""
    i1, i2, t1, t2 = (top[name] for name in INPUTS)
    return {
        "h1": f"{c['w1']}*{i1}+{c['w2']}*{i2}",
        "out_h1": _sigmoid(c["h1"]),
        "h2": f"{c['w3']}*{i1}+{c['w4']}*{i2}",
        "out_h2": _sigmoid(c["h2"]),
        "o1": f"{c['w5']}*{c['out_h1']}+{c['w6']}*{c['out_h2']}",
        "out_o1": _sigmoid(c["o1"]),
        "o2": f"{c['w7']}*{c['out_h1']}+{c['w8']}*{c['out_h2']}",
        "out_o2": _sigmoid(c["o2"]),
        "E1": f"0.5*({t1}-{c['out_o1']})^2",
        "E2": f"0.5*({t2}-{c['out_o2']})^2",
        "E_total": f"{c['E1']}+{c['E2']}",
    }


def _backward(c, top):
    """The eight gradients of one step, each written out in full from its row's cells as the
    exercise does (no helper cells for the deltas)."""
    i1, i2, t1, t2 = (top[name] for name in INPUTS)
    delta_o1 = f"({c['out_o1']}-{t1})*{c['out_o1']}*(1-{c['out_o1']})"
    delta_o2 = f"({c['out_o2']}-{t2})*{c['out_o2']}*(1-{c['out_o2']})"
    delta_h1 = f"({delta_o1}*{c['w5']}+{delta_o2}*{c['w7']})*{c['out_h1']}*(1-{c['out_h1']})"
    delta_h2 = f"({delta_o1}*{c['w6']}+{delta_o2}*{c['w8']})*{c['out_h2']}*(1-{c['out_h2']})"
    return {
        "dE_dw1": f"{delta_h1}*{i1}",
        "dE_dw2": f"{delta_h1}*{i2}",
        "dE_dw3": f"{delta_h2}*{i1}",
        "dE_dw4": f"{delta_h2}*{i2}",
        "dE_dw5": f"{delta_o1}*{c['out_h1']}",
        "dE_dw6": f"{delta_o1}*{c['out_h2']}",
        "dE_dw7": f"{delta_o2}*{c['out_h1']}",
        "dE_dw8": f"{delta_o2}*{c['out_h2']}",
    }


def _weights(above, top):
    """A step's weights: the first step's from the block above the table, every later one
    w - η·∂E/∂w of the row above (all eight updated together, from one forward pass)."""
    if above is None:
        return {"step": "0", **{w: top[w] for w in toy.WEIGHTS}}
    step = {"step": f"{above['step']}+1"}
    return step | {w: f"{above[w]}-{top['lr']}*{above[f'dE_d{w}']}" for w in toy.WEIGHTS}


def step_formulas(row, top):
    """Every cell of the step table's row `row` (0-based) as a formula, by column name."""
    cells = _cells(row)
    above = _cells(row - 1) if row > FIRST_STEP_ROW else None
    formulas = _weights(above, top) | _forward(cells, top) | _backward(cells, top)
    return {name: "=" + formulas[name] for name in TABLE_COLUMNS}


def _cells(row):
    """{column name: cell address} of the step table's row `row` (0-based)."""
    return {name: xl_rowcol_to_cell(row, col) for col, name in enumerate(TABLE_COLUMNS)}


def _top_cells():
    """{name: absolute address} of the block above the table (values in column B)."""
    return {
        name: xl_rowcol_to_cell(TOP_ROW + k, 1, row_abs=True, col_abs=True)
        for k, name in enumerate(TOP_LABELS)
    }


# --------------------------------------------------------------------------- input


def read_sheet_runs(path):
    """{lr: its run from the sheet's weights} from the sweep's history.csv at `path`, each run
    a DataFrame in step order; raises ValueError naming the file when it cannot be a sheet.
    Of a sweep (columns before lr), the first combination's runs: the workbook is one
    exercise."""
    from jitprop.tables import read_csv

    needed = ["lr", "init", *INPUTS, *TABLE_COLUMNS]
    columns = list(read_csv(path, nrows=0).columns)
    missing = [name for name in needed if name not in columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    swept = columns[: columns.index("lr")]
    history = read_csv(path, usecols=swept + needed)
    if swept:
        first = history.iloc[0]
        history = history[(history[swept] == first[swept]).all(axis=1)]
    history = history[needed]
    sheet = history[history["init"] == "sheet"]
    if sheet.empty:
        raise ValueError(f"{path}: no run from the sheet's weights (init 'sheet')")
    rates = {float(lr): run.reset_index(drop=True) for lr, run in sheet.groupby("lr", sort=True)}
    for lr, run in rates.items():
        if run["step"].tolist() != list(range(len(run))):
            raise ValueError(f"{path}: the sheet run at lr {lr!r} does not list steps 0, 1, ...")
        if FIRST_STEP_ROW + len(run) > MAX_ROWS:
            raise ValueError(f"{path}: {len(run)} steps do not fit a worksheet's {MAX_ROWS} rows")
    return rates


# --------------------------------------------------------------------------- the workbook


def sheet_name(lr):
    """The worksheet of a learning rate, named with its η as paths name it (eta=0.5)."""
    return f"eta={lr_label(lr)}"


def write(rates, path):
    """Write the workbook to `path` (atomically) from `rates`, as read_sheet_runs returns them:
    an overview of every learning rate first, then one worksheet per learning rate.  Each
    formula carries its value from history.csv as the cached result a reader shows before it
    recalculates."""
    with io.atomic_path(path) as tmp:
        # in_memory: every member of the zip gets the same fixed date (on disk, a local time).
        book = xlsxwriter.Workbook(str(tmp), {"in_memory": True})
        book.set_properties(
            {
                "title": "Backpropagation by hand: the 2-2-2 network",
                "author": "jitprop",
                "comments": "Written by `jitprop toy-sheet` from results/toy/history.csv",
                "created": CREATED,
            }
        )
        styles = {
            "bold": book.add_format({"bold": True}),
            "title": book.add_format({"bold": True, "font_size": 13}),
            "header": book.add_format({"bold": True, "bottom": 1, "align": "center"}),
        }
        overview = book.add_worksheet(OVERVIEW)
        for lr, run in rates.items():
            _write_rate(book, styles, lr, run)
        _write_overview(book, overview, styles, rates)
        book.close()


def _write_rate(book, styles, lr, run):
    """The worksheet of one learning rate: inputs, targets, η and first weights at the top, the
    step table below, and its loss chart beside the top block."""
    sheet = book.add_worksheet(sheet_name(lr))
    first = run.iloc[0]
    sheet.write_string(
        0, 0, f"Backpropagation by hand: the 2-2-2 network at η = {lr_text(lr)}", styles["title"]
    )
    sheet.write_string(
        1,
        0,
        "Every cell of the table is a formula: change a value in column B to see it recomputed.",
    )
    for k, (name, label) in enumerate(TOP_LABELS.items()):
        sheet.write_string(TOP_ROW + k, 0, label, styles["bold"])
        sheet.write_number(TOP_ROW + k, 1, float(lr if name == "lr" else first[name]))
    for col, name in enumerate(TABLE_COLUMNS):
        sheet.write_string(HEADER_ROW, col, name, styles["header"])
    top = _top_cells()
    for step, values in enumerate(run[TABLE_COLUMNS].itertuples(index=False)):
        formulas = step_formulas(FIRST_STEP_ROW + step, top)
        for col, (name, value) in enumerate(zip(TABLE_COLUMNS, values, strict=True)):
            sheet.write_formula(FIRST_STEP_ROW + step, col, formulas[name], None, _cached(value))
    sheet.set_column(0, len(TABLE_COLUMNS) - 1, 13)
    _print_setup(sheet)
    sheet.repeat_rows(HEADER_ROW)
    chart = _loss_chart(book, f"Total loss at η = {lr_text(lr)}", len(run))
    chart.set_legend({"none": True})
    _add_loss_series(chart, lr, len(run))
    # Beside the block above the table and no lower (a chart is 288 px high, a row 20 px).
    height = (HEADER_ROW - TOP_ROW - 0.5) * 20
    sheet.insert_chart(TOP_ROW, 3, chart, {"x_scale": 1.4, "y_scale": height / 288})


def _print_setup(sheet):
    """Printed (or exported to PDF): landscape, the full width on one page, gridlines."""
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)
    sheet.hide_gridlines(0)  # 0: shown on screen and printed
    sheet.print_row_col_headers()  # A, B, C and 1, 2, 3, as the formulas name cells


def _cached(value):
    # A blank cached value for what a cell cannot hold (NaN, inf): readers then recalculate it.
    return value if math.isfinite(value) else ""


def _loss_chart(book, title, steps):
    chart = book.add_chart({"type": "line"})
    chart.set_title({"name": title})
    chart.set_x_axis({"name": "step", "interval_unit": max(1, steps // 10), "interval_tick": 1})
    chart.set_y_axis({"name": "E_total", "major_gridlines": {"visible": True}})
    return chart


def _add_loss_series(chart, lr, steps):
    """E_total against the step of one learning rate's worksheet, as one line."""
    name, last = sheet_name(lr), FIRST_STEP_ROW + steps - 1
    column = TABLE_COLUMNS.index("E_total")
    chart.add_series(
        {
            "name": f"η = {lr_text(lr)}",
            "categories": [name, FIRST_STEP_ROW, 0, last, 0],
            "values": [name, FIRST_STEP_ROW, column, last, column],
            "line": {"width": 1.5},
        }
    )


def _spread(items, most):
    """All of `items`, or `most` of them evenly spread from the first to the last."""
    if len(items) <= most:
        return items
    return [items[round(k * (len(items) - 1) / (most - 1))] for k in range(most)]


def _write_overview(book, sheet, styles, rates):
    """The first worksheet: per learning rate, E_total at the first and the last step (formulas
    on the rate's worksheet), and all the loss curves in one chart, log-scaled."""
    steps = len(next(iter(rates.values())))
    sheet.write_string(
        0, 0, "Total loss of the 2-2-2 network from the sheet's weights", styles["title"]
    )
    header = ["η", "worksheet", "E_total at step 0", f"E_total at step {steps - 1} (last)"]
    for col, text in enumerate(header):
        sheet.write_string(2, col, text, styles["header"])
    column = TABLE_COLUMNS.index("E_total")
    charted = _spread(list(rates), MAX_SERIES)
    note = "" if len(charted) == len(rates) else f" ({len(charted)} of {len(rates)} rates)"
    chart = _loss_chart(book, f"Total loss from the sheet's weights{note}", steps)
    chart.set_y_axis({"name": "E_total (log scale)", "log_base": 10})
    for row, (lr, run) in enumerate(rates.items(), start=3):
        name = quote_sheetname(sheet_name(lr))
        last = FIRST_STEP_ROW + len(run) - 1
        sheet.write_formula(row, 0, f"={name}!{_top_cells()['lr']}", None, lr)
        sheet.write_url(row, 1, f"internal:{name}!A1", string=sheet_name(lr))
        first_cell = xl_rowcol_to_cell(FIRST_STEP_ROW, column)
        last_cell = xl_rowcol_to_cell(last, column)
        E_total = run["E_total"]
        sheet.write_formula(row, 2, f"={name}!{first_cell}", None, _cached(E_total.iloc[0]))
        sheet.write_formula(row, 3, f"={name}!{last_cell}", None, _cached(E_total.iloc[-1]))
        if lr in charted:
            _add_loss_series(chart, lr, len(run))
    sheet.set_column(0, 1, 12)
    sheet.set_column(2, 3, 22)
    _print_setup(sheet)
    sheet.insert_chart(2, 5, chart, {"x_scale": 1.5, "y_scale": 1.4})
