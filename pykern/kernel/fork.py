"""``kernel/fork.c``: a new user process (``m.new_task()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mm.task import Task

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["copy_process"]


def copy_process(m: Machine) -> Task:
    """``copy_process``: a task with the next pid and no memory, in ``m.kernel.tasks``;
    ``dup_task_struct`` gives it the machine context's fault-injection state.

    [model] Every task is forked from the machine context (pid 0), not from a parent task.
    """
    k = m.kernel
    task = Task(m, k.next_pid)
    k.tasks[task.pid] = task
    k.fault_inject.dup_task_struct(task.pid)
    k.next_pid += 1
    return task
