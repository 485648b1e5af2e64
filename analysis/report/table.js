// thinwire report: sort and filter the tables marked class="sortable" (no library, no network).
// Click a column head to sort by it (again: the other way); numbers sort as numbers, empty cells last.
// The box <input data-filter="TABLE-ID"> keeps the rows holding every word typed (any column;
// "column:word" looks in that column only), and the element data-count="TABLE-ID" says how many show.
"use strict";
(function () {
  function cellValue(row, index) {
    const cell = row.cells[index];
    return cell ? cell.textContent.trim() : "";
  }
  function compare(a, b) {
    if (a === "" || b === "") return (a === "") - (b === "");
    const x = Number(a), y = Number(b);
    if (!Number.isNaN(x) && !Number.isNaN(y)) return x - y;
    return a.localeCompare(b, undefined, {numeric: true});
  }
  function makeSortable(table) {
    const heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, index) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      function sort() {
        const direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          const a = cellValue(r, index), b = cellValue(s, index);
          if (a === "" || b === "") return (a === "") - (b === "");
          return direction * compare(a, b);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  }
  function makeFilter(input) {
    const table = document.getElementById(input.dataset.filter);
    const count = document.querySelector('[data-count="' + input.dataset.filter + '"]');
    const names = Array.prototype.map.call(table.tHead.rows[0].cells,
      function (th) { return th.textContent.trim().toLowerCase(); });
    function apply() {
      const terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        const ok = terms.every(function (term) {
          const colon = term.indexOf(":");
          const column = colon > 0 ? names.indexOf(term.slice(0, colon)) : -1;
          if (column >= 0) return cellValue(row, column).toLowerCase().indexOf(term.slice(colon + 1)) >= 0;
          return row.textContent.toLowerCase().indexOf(term) >= 0;
        });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " runs shown";
    }
    input.addEventListener("input", apply);
    apply();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(makeSortable);
    document.querySelectorAll("input[data-filter]").forEach(makeFilter);
  });
})();
