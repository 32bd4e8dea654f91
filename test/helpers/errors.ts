/** What a synchronous call threw (null when it returned), for assertions on the error's type and fields. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return null;
}
