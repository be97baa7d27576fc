CREATE TABLE "token_auth_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "token_auth_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"type" text NOT NULL,
	"user_id" text,
	"token_id" bigint,
	"ip" text,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "token_auth_throttle" (
	"key" text PRIMARY KEY NOT NULL,
	"count" integer NOT NULL,
	"reset_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "token_auth_events_at_idx" ON "token_auth_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "token_auth_events_user_id_at_idx" ON "token_auth_events" USING btree ("user_id","at");--> statement-breakpoint
CREATE INDEX "token_auth_throttle_reset_at_idx" ON "token_auth_throttle" USING btree ("reset_at");