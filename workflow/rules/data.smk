# Inputs: MNIST is downloaded into resources/mnist/ only when mlp.data_dir is left at that
# default; a directory the user names must already hold the files.


rule download_mnist:
    output:
        expand("resources/mnist/{name}", name=MNIST_GZ),
    log:
        "results/logs/download_mnist.log",
    # Retried downloads are cheap; a half-downloaded file is never renamed into place.
    retries: 1
    threads: 1
    params:
        jitprop=JITPROP,
        mirrors=config["mlp"]["mirrors"],
    shell:
        "{params.jitprop} download-mnist --dest resources/mnist --mirrors {params.mirrors:q} 2> {log:q}"
