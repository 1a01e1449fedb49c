import type { MediaOutcome, ProducedOutput } from '../../processors/mediaTasks.ts';

/** The outcome of a processor that had to succeed (its reason in the error when it did not). */
export function okOutcome(outcome: MediaOutcome): Extract<MediaOutcome, { ok: true }> {
  if (!outcome.ok) throw new Error(`expected ok, got: ${outcome.reason}`);
  return outcome;
}

/** One output of a successful outcome, by name. */
export function output(outcome: Extract<MediaOutcome, { ok: true }>, name: ProducedOutput['name']): ProducedOutput {
  const found = outcome.outputs.find((o) => o.name === name);
  if (!found) throw new Error(`no ${name} output`);
  return found;
}
