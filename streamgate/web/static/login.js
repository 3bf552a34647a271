// The 401 page: a token kept from earlier in this tab is sent again at once
// (the page then takes it out of the address bar); a rejected one is dropped.
"use strict";
(function () {
  const KEY = "streamgate-token";
  const form = document.getElementById("login");
  if (form === null) return;
  if (form.classList.contains("rejected")) {
    sessionStorage.removeItem(KEY);
    return;
  }
  const kept = sessionStorage.getItem(KEY);
  if (kept) location.replace("/?token=" + encodeURIComponent(kept));
})();
