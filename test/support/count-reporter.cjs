// Prints jest's totals as one closing line, `N passed, N failed[, N skipped] in XmYs`, which CI
// counts; the time runs from jest's start to the last result.
function duration(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(seconds / 60)}m${seconds % 60}s`;
}

class CountReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const line =
      `${results.numPassedTests} passed, ${failed} failed` +
      (skipped ? `, ${skipped} skipped` : '') +
      ` in ${duration(Date.now() - results.startTime)}`;
    process.stdout.write(`\n${line}\n`);
  }
}
module.exports = CountReporter;
