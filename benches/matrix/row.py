"""One row of bench-matrix.sh: `moverctl bench --json` on stdin, the
scenario's name and the load average as arguments."""
import json
import sys

name, load = sys.argv[1], sys.argv[2]
j = json.load(sys.stdin)


def g(key, fmt="{:.3f}"):
    v = j.get(key)
    return "-" if v is None else fmt.format(v)


print(
    f"{name:<34} susp {g('suspension_ms')} ms"
    f"  predicted {g('predicted_suspension_ms')} ms"
    f"  (holds in {j.get('prediction_holding_runs')}/{j.get('runs')})"
    f"  total {g('total_ms', '{:.0f}')} ms  sent {g('bytes_sent', '{:.0f}')} B"
    f"  ref ratio {g('reference_ratio')}  verified {j.get('verified')}  load {load}"
)
