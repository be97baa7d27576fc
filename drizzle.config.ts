import { defineConfig } from 'drizzle-kit'

// The migrations journal is kept in its own table so this package's migrations never mix with a
// host app's own Drizzle migrations (which default to drizzle.__drizzle_migrations); the
// programmatic migrate() in lib/store/database.ts uses the same table.
export default defineConfig({
  dialect: 'postgresql',
  schema: './lib/store/schema.ts',
  out: './drizzle',
  tablesFilter: ['token_auth_*'],
  migrations: { schema: 'drizzle', table: '__token_auth_migrations' },
  dbCredentials: {
    url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  }
})
