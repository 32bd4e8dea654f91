/**
 * Last-resort cleanup for the demo: synchronous steps (SIGKILL a child, delete a network
 * namespace) registered as resources appear, run once on exit, on an uncaught error or on a second
 * Ctrl-C. The orderly path (scenario end, first Ctrl-C) stops everything gracefully first; these
 * steps then find nothing left to do.
 */
import type { ChildProcess } from 'child_process';

const steps: { name: string; fn: () => void }[] = [];
let ran = false;

/** Registers a synchronous cleanup step; returns a function that unregisters it. */
export function atExit(name: string, fn: () => void): () => void {
  const step = { name, fn };
  steps.push(step);
  return () => {
    const i = steps.indexOf(step);
    if (i >= 0) steps.splice(i, 1);
  };
}

/** SIGKILLs a child at exit if it is still running. */
export function killAtExit(name: string, child: ChildProcess): () => void {
  return atExit(name, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
}

/** Runs every registered step, newest first, once; errors are swallowed (best effort). */
export function runCleanupNow(): void {
  if (ran) return;
  ran = true;
  for (const step of steps.splice(0).reverse()) {
    try {
      step.fn();
    } catch {
      // best effort: the process is going away
    }
  }
}
