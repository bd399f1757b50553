/**
 * The global setup (the shared S3 and PostgreSQL servers) is compiled by `npm test`'s pretest
 * step into .tmp/setup, because Node loads it outside jest's module system.
 *
 * Jest runs the TypeScript sources as ES modules (the @actions/* packages are ESM-only). */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, diagnostics: false }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  globalSetup: '<rootDir>/.tmp/setup/test/support/global-setup.js',
  globalTeardown: '<rootDir>/.tmp/setup/test/support/global-teardown.js',
  testTimeout: 240000,
  maxWorkers: 2,
  reporters: ['default', '<rootDir>/test/support/count-reporter.cjs'],
};
