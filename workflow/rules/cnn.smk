# The CNN on MNIST (the exercise's Part 2): one job per (learning rate, seed); the sweep's
# tables, then figures drawn from them.


rule cnn_run:
    input:
        cnn_inputs,
    output:
        history=results("cnn/runs/{run}/history.csv"),
        steps=results("cnn/runs/{run}/steps.csv"),
        summary=results("cnn/runs/{run}/summary.csv"),
        misclassified=results("cnn/runs/{run}/misclassified.csv"),
        timing=results("cnn/runs/{run}/timing.csv"),
    log:
        results("logs/cnn/{run}.log"),
    # Two threads: a run takes minutes, and its kernels use both (1.9x on 2 cores) with the
    # same bits as on one; Snakemake gives fewer when --cores is smaller.
    threads: 2
    resources:
        mem_mb=1000,
    params:
        jitprop=JITPROP,
        code=SOURCE,
        args=cnn_args,
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} --threads {threads} cnn {params.args:q} --out {params.out:q} 2> {log:q}"


rule cnn_aggregate:
    input:
        expand("{run}/{table}.csv", run=cnn_run_dirs(), table=FAMILIES["cnn"].tables),
    output:
        history=results("cnn/history.csv"),
        steps=results("cnn/steps.csv"),
        summary=report(
            results("cnn/summary.csv"),
            caption="../report/cnn_summary.rst",
            category="CNN",
            subcategory="Tables",
            labels={"result": "one row per run"},
        ),
        summary_by_lr=report(
            results("cnn/summary_by_lr.csv"),
            caption="../report/cnn_summary_by_lr.rst",
            category="CNN",
            subcategory="Tables",
            labels={"result": "one row per learning rate"},
        ),
        misclassified=results("cnn/misclassified.csv"),
        timing=results("cnn/timing.csv"),
    log:
        results("logs/cnn/aggregate.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        runs=cnn_run_dirs(),
        out=subpath(output.history, parent=True),
    shell:
        "{params.jitprop} cnn-aggregate {params.runs:q} --out {params.out:q} 2> {log:q}"


rule cnn_figures:
    input:
        history=rules.cnn_aggregate.output.history,
        tables=rules.cnn_aggregate.output,
        # The misclassified digits' images, from the data_dir the runs read (it may be swept).
        mnist=runs.first_run_inputs(config, "cnn"),
    output:
        report(
            results("figures/cnn_loss_curves.png"),
            caption="../report/cnn_loss_curves.rst",
            category="CNN",
            subcategory="Figures",
            labels={"result": "loss per epoch"},
        ),
        report(
            results("figures/cnn_accuracy_curves.png"),
            caption="../report/cnn_accuracy_curves.rst",
            category="CNN",
            subcategory="Figures",
            labels={"result": "accuracy per epoch"},
        ),
        report(
            results("figures/cnn_accuracy_vs_lr.png"),
            caption="../report/cnn_accuracy_vs_lr.rst",
            category="CNN",
            subcategory="Figures",
            labels={"result": "final accuracy vs learning rate"},
        ),
        report(
            results("figures/cnn_misclassified.png"),
            caption="../report/cnn_misclassified.rst",
            category="CNN",
            subcategory="Figures",
            labels={"result": "the best run's mistakes"},
        ),
    log:
        results("logs/cnn/figures.log"),
    threads: 1
    params:
        jitprop=JITPROP,
        code=SOURCE,
        results=subpath(input.history, parent=True),
        figures=subpath(output[0], parent=True),
        data=mnist_dir,
    shell:
        "{params.jitprop} cnn-plot {params.results:q} --figures {params.figures:q}"
        " --data-dir={params.data:q} 2> {log:q}"


rule cnn:
    input:
        rules.cnn_aggregate.output,
        results("cnn/provenance.json"),
        rules.cnn_figures.output,
