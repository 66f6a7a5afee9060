-- Seed 004 migrations 0002 ("Add subscriptions table"), 0012 ("Add Creem
-- payment fields to subscriptions"), 0013 ("Add checkout_id for idempotency")
-- and 0014's cascade, in one table as the seed documents its end state.
-- These are the app's subscriptions, one per app user; seed 000's gateway
-- keeps the SaaS customer's own (gateway.users.subscription_*) in wank_saas.
-- Drizzle-kit names and no defaults beyond the seed's; deleting a user deletes
-- their subscription (seed 0014; the seed names no other target).

CREATE TABLE subscriptions (
    "id"                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "userId"              varchar(36) NOT NULL
                          CONSTRAINT "subscriptions_userId_unique" UNIQUE   -- one subscription per user
                          CONSTRAINT "subscriptions_userId_user_id_fk"
                          REFERENCES "user" ("id") ON DELETE CASCADE,
    "planType"            text NOT NULL,      -- 'free', 'pro_monthly', 'pro_yearly'
    "status"              text NOT NULL,      -- 'active', 'canceled', 'expired'
    "creemCustomerId"     text CONSTRAINT "subscriptions_creemCustomerId_unique" UNIQUE,
    "creemSubscriptionId" text CONSTRAINT "subscriptions_creemSubscriptionId_unique" UNIQUE,
    "creemCheckoutId"     text CONSTRAINT "subscriptions_creemCheckoutId_unique" UNIQUE,
    "currentPeriodStart"  timestamp,
    "currentPeriodEnd"    timestamp,
    "canceledAt"          timestamp,
    "createdAt"           timestamp NOT NULL,
    "updatedAt"           timestamp NOT NULL
);
