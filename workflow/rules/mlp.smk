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
    params:
        args=mlp_run_args,
        out="results/mlp/runs/lr~{lr}/seed~{seed}",
    threads: 1
    resources:
        mem_mb=400,
    shell:
        "{JITPROP} --threads {threads} mlp --lr {wildcards.lr:q} {params.args:q}"
        " --out {params.out:q} 2> {log:q}"
