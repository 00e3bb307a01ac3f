// The demo front-end: plain JavaScript against the GraphQL API at /graphql/.
// Every text that comes from the server is put in the page with textContent, never as HTML.
"use strict";

const stripe = Stripe(window.DEMO.publishableKey);
const card = stripe.elements().create("card");
card.mount("#card-element");
let customerId = null; // global id of the active StripeCustomer, once there is one

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// POST a GraphQL request; top-level errors (not signed in, limits, ...) are thrown.
async function gql(query, variables = {}) {
  const response = await fetch(window.DEMO.graphqlUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken()},
    body: JSON.stringify({query, variables}),
  });
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new Error(`The server answered ${response.status} without JSON.`);
  }
  if (body.errors && body.errors.length) {
    throw new Error(body.errors.map((e) => e.message).join(" "));
  }
  return body.data;
}

function show(kind, texts) {
  const box = document.getElementById("messages");
  box.replaceChildren(...texts.map((text) => {
    const p = document.createElement("p");
    p.className = kind;
    p.textContent = text;
    return p;
  }));
}

const showOk = (text) => show("ok", [text]);
const showError = (text) => show("error", [text]);

// A payload's `errors` (StripeError: field, message, code, declineCode) shown to the person.
function payloadFailed(payload) {
  if (!payload.errors.length) return false;
  show("error", payload.errors.map((e) =>
    e.message + (e.declineCode ? ` (${e.declineCode})` : "") + ` [${e.code}${e.field ? ", " + e.field : ""}]`));
  return true;
}

function money(amount, currency) {
  const code = currency.toUpperCase();
  const digits = new Intl.NumberFormat("en", {style: "currency", currency: code}).resolvedOptions().maximumFractionDigits;
  return new Intl.NumberFormat("en", {style: "currency", currency: code}).format(amount / 10 ** digits);
}

function item(text, ...buttons) {
  const li = document.createElement("li");
  const span = document.createElement("span");
  span.textContent = text;
  li.append(span, ...buttons);
  return li;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onClick();
    } catch (err) {
      showError(err.message);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

function fill(listId, items, empty) {
  document.getElementById(listId).replaceChildren(...(items.length ? items : [item(empty)]));
}

const CARD_FIELDS = "id defaultSourceCard { brand last4 expMonth expYear }";

async function loadCard() {
  const data = await gql(`{ stripeCustomers(isActive: true, first: 1) { edges { node { ${CARD_FIELDS} } } } }`);
  const edge = data.stripeCustomers.edges[0];
  showCard(edge ? edge.node : null);
}

function showCard(customer) {
  customerId = customer ? customer.id : null;
  const c = customer && customer.defaultSourceCard;
  document.getElementById("card-status").textContent = c
    ? `Your card: ${c.brand} •••• ${c.last4}, expires ${c.expMonth}/${c.expYear}.`
    : "No card yet.";
  document.getElementById("save-card").textContent = customerId ? "Replace card" : "Save card";
}

async function saveCard() {
  let result;
  try {
    result = await stripe.createToken(card);
  } catch (err) {
    showError("Enter the card's number, expiry and CVC.");
    return;
  }
  if (result.error) {
    showError(result.error.message || "stripe.js refused the card.");
    return;
  }
  const token = JSON.stringify(result.token);
  let payload;
  if (customerId) {
    const data = await gql(
      `mutation($customer: ID!, $token: JSONString!) {
         addStripeCustomerSource(input: {customer: $customer, stripeJsResponse: $token}) {
           errors { field message code declineCode } customer { ${CARD_FIELDS} } } }`,
      {customer: customerId, token});
    payload = data.addStripeCustomerSource;
  } else {
    const data = await gql(
      `mutation($token: JSONString!) {
         createStripeCustomer(input: {stripeJsResponse: $token}) {
           errors { field message code declineCode } customer { ${CARD_FIELDS} } } }`,
      {token});
    payload = data.createStripeCustomer;
  }
  if (payloadFailed(payload)) return;
  showCard(payload.customer);
  showOk("Card saved.");
}

async function loadPlans() {
  const data = await gql(`{ stripeSubscriptionPlans { edges { node { id name amount currency interval intervalCount } } } }`);
  fill("plan-list", data.stripeSubscriptionPlans.edges.map(({node}) => item(
    `${node.name}: ${money(node.amount, node.currency)} every ${node.intervalCount > 1 ? node.intervalCount + " " : ""}${node.interval.toLowerCase()}`,
    button("Subscribe", () => subscribe(node)),
  )), "No plans at Stripe.");
}

async function subscribe(plan) {
  const coupon = document.getElementById("coupon").value.trim() || null;
  const data = await gql(
    `mutation($plan: ID!, $coupon: String) {
       createStripeSubscription(input: {plan: $plan, coupon: $coupon}) {
         errors { field message code } subscription { id status } } }`,
    {plan: plan.id, coupon});
  const payload = data.createStripeSubscription;
  if (payloadFailed(payload)) return;
  showOk(`Subscribed to ${plan.name} (${payload.subscription.status.toLowerCase()}).`);
  await loadSubscriptions();
  await loadCharges();
}

async function loadSubscriptions() {
  const data = await gql(`{ stripeSubscriptions(first: 50) { edges { node {
      id status atPeriodEnd endDate plan { name } coupon { couponId percentOff amountOff currency } } } } }`);
  fill("subscription-list", data.stripeSubscriptions.edges.map(({node}) => {
    const parts = [`${node.plan.name}: ${(node.status || "pending").toLowerCase()}`];
    if (node.coupon) parts.push(`coupon ${node.coupon.couponId}`);
    if (node.atPeriodEnd) parts.push(`ends ${node.endDate || "at the end of the period"}`);
    const open = node.status !== "CANCELED" && node.status !== "INCOMPLETE_EXPIRED";
    const buttons = open ? [
      ...(node.atPeriodEnd ? [] : [button("Cancel at period end", () => cancel(node, true))]),
      button("Cancel now", () => cancel(node, false)),
    ] : [];
    return item(parts.join(", "), ...buttons);
  }), "None yet.");
}

async function cancel(subscription, atPeriodEnd) {
  const data = await gql(
    `mutation($id: ID!, $atPeriodEnd: Boolean) {
       cancelStripeSubscription(input: {subscription: $id, atPeriodEnd: $atPeriodEnd}) {
         errors { field message code } subscription { status atPeriodEnd } } }`,
    {id: subscription.id, atPeriodEnd});
  const payload = data.cancelStripeSubscription;
  if (payloadFailed(payload)) return;
  showOk(atPeriodEnd ? `${subscription.plan.name} ends at the end of the paid period.` : `${subscription.plan.name} canceled.`);
  await loadSubscriptions();
}

async function loadCharges() {
  const data = await gql(`{ stripeCharges(first: 20) { edges { node {
      amount currency description isCharged isRefunded amountRefunded chargeAttemptFailed created } } } }`);
  fill("charge-list", data.stripeCharges.edges.map(({node}) => {
    const state = node.isRefunded ? "refunded" : node.amountRefunded ? `partly refunded (${money(node.amountRefunded, node.currency)})`
      : node.isCharged ? "paid" : node.chargeAttemptFailed ? "failed" : "pending";
    return item(`${money(node.amount, node.currency)}: ${node.description || "charge"}, ${state}`);
  }), "None yet.");
}

document.getElementById("save-card").addEventListener("click", async (event) => {
  event.target.disabled = true;
  try {
    await saveCard();
  } catch (err) {
    showError(err.message);
  } finally {
    event.target.disabled = false;
  }
});

Promise.all([loadCard(), loadPlans(), loadSubscriptions(), loadCharges()])
  .then(() => document.body.setAttribute("data-ready", "true"))
  .catch((err) => showError(err.message));
