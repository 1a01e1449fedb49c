/**
 * Resolves with the first value `probe` returns (undefined: not yet), asking now and at every call
 * of the functions in `waiters` (which the caller runs whenever something arrives); rejects when
 * `probe` throws, or after `timeoutMs` with `timeoutMessage()`.
 */
export function waitOnNotify<T>(waiters: Set<() => void>, probe: () => T | undefined, timeoutMessage: () => string, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const check = () => {
      try {
        const value = probe();
        if (value !== undefined) finish(() => resolve(value));
      } catch (error) {
        finish(() => reject(error));
      }
    };
    const timer = setTimeout(() => finish(() => reject(new Error(timeoutMessage()))), timeoutMs);
    const finish = (settle: () => void) => {
      clearTimeout(timer);
      waiters.delete(check);
      settle();
    };
    waiters.add(check);
    check();
  });
}
