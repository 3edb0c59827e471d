"""Tools: the library behind the commands besides ``train`` and ``data``, each callable from Python.

``gradcheck`` (RHEL against float64 BPTT gradients), ``bench`` (time and memory of a training step),
``sweep`` (grids of runs on a process pool or Ray, hyperparameter search), ``report`` (tables and plots
from result files), ``mainjob`` (the end-to-end comparison of ``hamecho run``), ``demo`` (the
continuous-time oscillators). Their command lines are in :mod:`hamecho.cli`.
"""
