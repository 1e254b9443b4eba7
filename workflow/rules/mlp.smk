# The MLP on MNIST: one job per (learning rate, seed).


rule mlp_run:
    input:
        mnist_files(),
    output:
        history="results/mlp/runs/lr~{lr}/seed~{seed}/history.csv",
        steps="results/mlp/runs/lr~{lr}/seed~{seed}/steps.csv",
        summary="results/mlp/runs/lr~{lr}/seed~{seed}/summary.csv",
        timing="results/mlp/runs/lr~{lr}/seed~{seed}/timing.csv",
    log:
        "results/logs/mlp/lr~{lr}/seed~{seed}.log",
    threads: 1
    resources:
        mem_mb=400,
    params:
        jitprop=JITPROP,
        args=mlp_run_args,
        out="results/mlp/runs/lr~{lr}/seed~{seed}",
    shell:
        "{params.jitprop} --threads {threads} mlp --lr {wildcards.lr:q} {params.args:q}"
        " --out {params.out:q} 2> {log:q}"
