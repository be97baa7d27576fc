// A deadline for a promise we cannot cancel (a query on a connection that stopped answering).

/** `promise`'s answer, or a rejection with `onTimeout()` once `ms` have passed (the work itself goes on). */
export function withTimeout<T> (promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}
