"""What the benchmark scripts print about the machine they ran on."""
import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name (``lscpu``), for the record of a measurement."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
