# The 2-2-2 exercise network: one job per (learning rate, start), or per chunk of
# toy.runs_per_job runs; the sweep's tables, then the figures and the exercise's workbook drawn
# from them.


rule toy_run:
    output:
        history=results("toy/runs/{part}/history.csv"),
        summary=results("toy/runs/{part}/summary.csv"),
    log:
        results("logs/toy/{part}.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        args=toy_args,
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} --threads {threads} toy {params.args:q} --out {params.out:q} 2> {log:q}"


rule toy_aggregate:
    input:
        expand("{run}/{table}.csv", run=toy_run_dirs(), table=FAMILIES["toy"].tables),
    output:
        history=results("toy/history.csv"),
        summary=results("toy/summary.csv"),
    log:
        results("logs/toy/aggregate.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        runs=toy_run_dirs(),
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} toy-aggregate {params.runs:q} --out {params.out:q} 2> {log:q}"


rule toy_figures:
    input:
        rules.toy_aggregate.output.history,
    output:
        report(
            results("figures/toy_loss_grid.png"),
            caption="../report/toy_loss_grid.rst",
            category="Toy net",
            subcategory="Figures",
            labels={"result": "total loss per learning rate"},
        ),
        report(
            results("figures/toy_loss_overlay.png"),
            caption="../report/toy_loss_overlay.rst",
            category="Toy net",
            subcategory="Figures",
            labels={"result": "total loss, all learning rates"},
        ),
    log:
        results("logs/toy/figures.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        results=subpath(input[0], parent=True),
        figures=subpath(output[0], parent=True),
    shell:
        "{params.jitprop} toy-plot {params.results:q} --figures {params.figures:q} 2> {log:q}"


rule toy_sheet:
    input:
        rules.toy_aggregate.output.history,
    output:
        report(
            results("toy/exercise.xlsx"),
            caption="../report/toy_exercise.rst",
            category="Toy net",
            subcategory="Workbook",
            labels={"result": "the exercise as a live spreadsheet"},
        ),
    log:
        results("logs/toy/sheet.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        results=subpath(input[0], parent=True),
    shell:
        "{params.jitprop} toy-sheet {params.results:q} --out {output:q} 2> {log:q}"


rule toy:
    input:
        rules.toy_aggregate.output,
        results("toy/provenance.json"),
        rules.toy_figures.output,
        rules.toy_sheet.output,
