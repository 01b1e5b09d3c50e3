"""``nnctl evaluate CHECKPOINT``: loss and every metric on the spec's test set or on --data, and for
classifiers precision, recall, F1 and support per class with the confusion counts."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def evaluate(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        data: str | None = typer.Option(
            None,
            help="labelled data of any kind training reads: CSV, .npz/.h5, "
            "IDX, image folder... (default: the spec's data.test)",
        ),
        preprocessed: bool = typer.Option(
            False, "--preprocessed", help="--data inputs are already rescaled and normalised"
        ),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
        confusion_matrix: str | None = typer.Option(
            None, "--confusion-matrix", help="also write the confusion matrix to this PNG"
        ),
        errors: str | None = typer.Option(
            None, "--errors", help="autoencoders: write each row's reconstruction error (and anomaly flag) to this CSV"
        ),
        anomaly_quantile: float | None = typer.Option(
            None,
            "--anomaly-quantile",
            help="autoencoders: first store this quantile of the TRAINING rows' "
            "errors in the checkpoint as the anomaly threshold (e.g. 0.99)",
        ),
        anomaly_label: str | None = typer.Option(
            None,
            "--anomaly-label",
            help="autoencoders: the column (npz/h5 key) of the evaluated data marking "
            "true anomalies (default: the spec's data.anomaly_label)",
        ),
    ):
        """Evaluate a checkpoint: loss and every metric of its spec; a classifier's per-class report.

        Example: nnctl evaluate runs/iris-mlp.h5 --data test.csv --json
        Example: nnctl evaluate runs/transactions-anomaly.h5 --errors errors.csv
        """
        from nnctl import backend as B
        from nnctl import run
        from nnctl.cli.output import emit_json, table
        from nnctl.cli.progress import RowsBar

        B.keep_freed_memory()  # the process's malloc settings are the application's to choose (backend doc)
        if confusion_matrix:  # before the work: a PNG path that cannot be written fails now
            from nnctl import fs

            fs.check_output_file(confusion_matrix, "confusion matrix")
        if anomaly_quantile is not None:  # from the training rows only, before the test rows are scored
            from nnctl.anomaly import refit

            if not 0 < anomaly_quantile < 1:
                from nnctl.errors import SpecError

                raise SpecError(
                    f"--anomaly-quantile: expected a number strictly between 0 and 1, found {anomaly_quantile}"
                )
            refit(checkpoint, anomaly_quantile, device)
        with RowsBar("evaluate", enabled=not json_) as bar:  # a terminal only; gone before the results print
            result = run.evaluate(
                checkpoint,
                data,
                device,
                preprocessed=preprocessed,
                on_batch=bar.rows,
                anomaly={"label": anomaly_label, "errors": errors},
            )
        if confusion_matrix:  # drawn from the evaluation's own counts; the path joins the result
            from nnctl.plots import confusion_from_result

            result["confusion_matrix"] = confusion_from_result(result, checkpoint, confusion_matrix)
        if json_:
            emit_json(result)
            return
        nested = ("checkpoint", "data", "per_class", "macro_avg", "weighted_avg", "confusion", "unseen")
        rows = [[k, v] for k, v in result.items() if k not in nested]
        if result.get("unseen"):
            rows.append(["unseen", ", ".join(f"{k} {v}" for k, v in result["unseen"].items())])
        table(rows, ["metric", "value"], title=f"{result['checkpoint']} on {result['data']}")
        if "per_class" in result:
            print()
            per = [[c, r["precision"], r["recall"], r["f1"], r["support"]] for c, r in result["per_class"].items()]
            support = sum(r["support"] for r in result["per_class"].values())
            per += [
                [name, a["precision"], a["recall"], a["f1"], support]
                for name, a in (("macro avg", result["macro_avg"]), ("weighted avg", result["weighted_avg"]))
            ]
            table(per, ["class", "precision", "recall", "f1", "support"])
