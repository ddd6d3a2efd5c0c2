"""Run several fairseq command lines in ONE Python process: ``python tests/hf_cli_driver.py PLAN.json``.

Each step calls the command's own entry point (``fairseq_cli.train.cli_main``,
``fairseq_cli.generate.cli_main``, or the step's ``function``, e.g. ``main`` of
``addrop_fairseq.tagging.cli``) with ``sys.argv`` set as the shell would set it, so the
code path is the CLI's; only the interpreter start and the imports (fairseq ~5 s,
transformers ~6 s on 2 cores) are paid once instead of per command. A step's log and
stdout go to its ``log`` file; ``PLAN.json.result`` gets ``{name: exit status}``.
Per-process state fairseq keeps between runs (the best checkpoint score) is cleared.
"""
import contextlib
import importlib
import json
import logging
import sys
import traceback


def run_step(step) -> int:
    from fairseq import checkpoint_utils

    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
    module = importlib.import_module(step["module"])
    root = logging.getLogger()
    with open(step["log"], "w") as out:
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
        saved = sys.argv
        sys.argv = [step["module"], *step["argv"]]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                getattr(module, step.get("function", "cli_main"))()
            return 0
        except SystemExit as e:
            if isinstance(e.code, str):  # sys.exit("error: ..."): the message, status 1
                out.write(e.code + "\n")
                return 1
            return int(e.code or 0)
        except BaseException:
            out.write(traceback.format_exc())
            return 1
        finally:
            sys.argv = saved
            root.removeHandler(handler)


def main(plan_path: str) -> None:
    with open(plan_path) as f:
        plan = json.load(f)
    for step in plan:  # import first: fairseq_cli modules call logging.basicConfig at import
        importlib.import_module(step["module"])
    for h in list(logging.getLogger().handlers):  # keep the steps' output in their own logs
        logging.getLogger().removeHandler(h)
    logging.getLogger().setLevel(logging.INFO)
    results = {}
    for step in plan:
        results[step["name"]] = run_step(step)
        with open(plan_path + ".result", "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
