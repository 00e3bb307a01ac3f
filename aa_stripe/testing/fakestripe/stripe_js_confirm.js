// aa-stripe-graphql's fake Stripe: confirmCardPayment as Stripe's stripe.js answers it (MIT, our own
// code, appended at runtime to localstripe's stand-in; see stripe_js.py). Uses localstripe's
// LOCALSTRIPE_BASE_API and openModal, defined above in the same script.
(function () {
  const makeStripe = Stripe;

  async function post(url, body) {
    const response = await fetch(url, {method: "POST", body: JSON.stringify(body)});
    const answer = await response.json().catch(() => ({}));
    if (response.status !== 200 || answer.error) {
      return {error: answer.error || {message: `The fake Stripe answered ${response.status}.`}};
    }
    return {intent: answer};
  }

  // What stripe.js resolves with once the intent has settled.
  function outcome(intent) {
    if (intent.status === "requires_payment_method" && intent.last_payment_error) {
      return {error: {...intent.last_payment_error, payment_intent: intent}};
    }
    return {paymentIntent: intent};
  }

  Stripe = (apiKey, options) => {
    const stripe = makeStripe(apiKey, options);
    stripe.confirmCardPayment = async (clientSecret, data) => {
      console.log("fake stripe.js: confirmCardPayment()");
      const match = /^(pi_\w+)_secret_/.exec(clientSecret || "");
      if (!match) {
        return {error: {type: "invalid_request_error", message: "Invalid value for confirmCardPayment: clientSecret."}};
      }
      const base = `${LOCALSTRIPE_BASE_API}/v1/payment_intents/${match[1]}`;
      let intent = null;
      const method = data && data.payment_method;
      if (method !== undefined && typeof method !== "string") {
        return {error: {type: "invalid_request_error", message: "This stand-in takes a payment method id (pm_...) only."}};
      }
      if (method) {
        const confirmed = await post(`${base}/confirm`, {key: apiKey, client_secret: clientSecret, payment_method: method});
        if (confirmed.error) return confirmed;
        intent = confirmed.intent;
        if (intent.status !== "requires_action") return outcome(intent);
      }
      const passed = await openModal("3D Secure\nDo you want to confirm or cancel?",
                                     "Complete authentication", "Fail authentication");
      const authenticated = await post(`${base}/_authenticate?success=${passed}`,
                                       {key: apiKey, client_secret: clientSecret});
      if (authenticated.error) return authenticated;
      return outcome(authenticated.intent);
    };
    stripe.handleCardPayment = (clientSecret) => stripe.confirmCardPayment(clientSecret);
    return stripe;
  };
})();
