"""Run VBench's own evaluator (``vbench.VBench.evaluate``); executed by the isolated environment's python.

This file is run as a script by ``rfvideo.eval.official.run_official`` with ``.venv-vbench/bin/python``
and an argument list; it imports only ``vbench`` (rfvideo is not installed there). It writes VBench's
own result files into ``--output``: ``{name}_eval_results.json`` (``{dimension: [score, [{"video_path",
"video_results"}, ...]]}``) and ``{name}_full_info.json``.
"""

import argparse
import os
import sys


def main(argv=None):
    """Parse the arguments and call ``VBench(device, full_info, output).evaluate(...)``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", required=True, help="folder holding only the {prompt}-{i}.mp4 videos")
    p.add_argument("--full-info", required=True, help="VBench_full_info.json")
    p.add_argument("--output", required=True, help="folder for VBench's result files")
    p.add_argument("--name", required=True, help="result file prefix")
    p.add_argument("--dimensions", nargs="+", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--local", action="store_true", help="VBench's load_ckpt_from_local (weights pre-placed)")
    a = p.parse_args(argv)

    import torch
    from vbench import VBench

    bench = VBench(torch.device(a.device), a.full_info, a.output)
    bench.evaluate(videos_path=a.videos, name=a.name, dimension_list=a.dimensions, local=a.local)
    if not os.path.isfile(os.path.join(a.output, a.name + "_eval_results.json")):
        print("VBench wrote no result file", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
