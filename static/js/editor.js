/* The editor page: CodeMirror over the form's <textarea name="script">, Ctrl/Cmd+Enter to
   run, and the examples menu. Without this file (or without JavaScript) the plain textarea is
   the editor and every control still works through ordinary links and form posts. */
(function () {
  "use strict";

  var isMac = /Mac|iPhone|iPad|iPod/.test(navigator.platform || navigator.userAgent);

  function submitRun(form) {
    var button = document.getElementById("run-button");
    if (button && button.disabled) return; // a run is being submitted already
    if (form.requestSubmit) {
      form.requestSubmit(button || undefined);
    } else {
      form.submit();
    }
  }

  // Pasted code often carries non-breaking spaces (web pages, chat apps, some browsers'
  // typing into contenteditable); in Python source they are a SyntaxError, so they become
  // plain spaces as they are inserted.
  function plainSpaces(CM) {
    return CM.EditorState.transactionFilter.of(function (tr) {
      if (!tr.docChanged) return tr;
      var fixes = [];
      tr.changes.iterChanges(function (fromA, toA, fromB, toB, inserted) {
        var text = inserted.toString();
        for (var i = text.indexOf("\u00a0"); i >= 0; i = text.indexOf("\u00a0", i + 1)) {
          fixes.push({ from: fromB + i, to: fromB + i + 1, insert: " " });
        }
      });
      return fixes.length ? [tr, { changes: fixes, sequential: true }] : tr;
    });
  }

  function mountEditor(textarea) {
    var CM = window.CM;
    if (!CM || textarea.dataset.enhanced) return null;
    var form = textarea.form;
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    var theme = new CM.Compartment();
    var label = document.querySelector('label[for="' + textarea.id + '"]');

    // CodeMirror injects its styles at run time. In a document that is a <style> element,
    // which the Content-Security-Policy (style-src 'self') refuses; inside a shadow root it
    // uses a constructed stylesheet instead, which CSP allows. Our own editor styles come
    // from a static file linked into the shadow root.
    var host = document.createElement("div");
    host.className = "code-editor__host";
    textarea.parentNode.insertBefore(host, textarea);
    var root = host.attachShadow({ mode: "open" });
    var css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = textarea.dataset.editorCss;
    root.appendChild(css);

    var view = new CM.EditorView({
      root: root,
      state: CM.EditorState.create({
        doc: textarea.value,
        extensions: [
          // Before basicSetup, so Mod-Enter runs instead of inserting a blank line.
          CM.keymap.of([
            {
              key: "Mod-Enter",
              run: function () {
                submitRun(form);
                return true;
              },
            },
            CM.indentWithTab,
          ]),
          CM.basicSetup,
          CM.python(),
          CM.indentUnit.of("    "),
          CM.EditorState.tabSize.of(4),
          plainSpaces(CM),
          theme.of(dark.matches ? CM.oneDark : []),
          CM.EditorView.contentAttributes.of({
            "aria-label": label ? label.textContent.trim() : "Python script",
          }),
          CM.EditorView.updateListener.of(function (update) {
            // The form posts the textarea, so it always holds what the editor shows.
            if (update.docChanged) {
              textarea.value = update.state.doc.toString();
              textarea.dispatchEvent(new Event("editor-change"));
            }
          }),
        ],
      }),
    });
    root.appendChild(view.dom);
    textarea.dataset.enhanced = "true";
    textarea.classList.add("is-enhanced");
    if (label) {
      label.addEventListener("click", function () {
        view.focus();
      });
    }

    var onScheme = function (event) {
      view.dispatch({ effects: theme.reconfigure(event.matches ? CM.oneDark : []) });
    };
    if (dark.addEventListener) dark.addEventListener("change", onScheme);
    return view;
  }

  function setScript(view, textarea, script) {
    if (view) {
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: script },
        selection: { anchor: 0 },
        scrollIntoView: true,
      });
      view.focus();
    } else {
      textarea.value = script;
      textarea.focus();
    }
  }

  function setVersion(select, version) {
    if (!select || !version) return;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === version) {
        select.value = version;
        return;
      }
    }
  }

  // Drafts: each tab keeps what is typed for each editor address (sessionStorage is per tab),
  // so a reload or Back brings it back; another tab has its own.
  var DRAFT_KEY = "integr8s:draft:" + location.pathname + location.search;

  function readDraft() {
    try {
      return JSON.parse(sessionStorage.getItem(DRAFT_KEY) || "null");
    } catch (e) {
      return null; // storage off or full: no drafts, the editor still works
    }
  }

  function saveDraft(form) {
    var draft = {
      script: form.elements.script.value,
      python_version: form.elements.python_version.value,
      stdin: form.elements.stdin ? form.elements.stdin.value : "",
      interactive: form.elements.interactive ? form.elements.interactive.checked : false,
    };
    try {
      sessionStorage.setItem(DRAFT_KEY, JSON.stringify(draft));
    } catch (e) {
      /* as above */
    }
  }

  function restoreDraft(form, view, textarea, select) {
    var draft = readDraft();
    if (!draft || typeof draft.script !== "string") return;
    if (draft.script !== textarea.value) {
      if (view) {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: draft.script } });
      } else {
        textarea.value = draft.script;
      }
    }
    setVersion(select, draft.python_version);
    if (form.elements.stdin && typeof draft.stdin === "string") {
      form.elements.stdin.value = draft.stdin;
      if (draft.stdin) form.elements.stdin.closest("details").open = true;
    }
    if (form.elements.interactive) form.elements.interactive.checked = !!draft.interactive;
  }

  function wireExamples(menu, view, textarea, select, isChanged, loaded) {
    menu.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-example-url]");
      if (!link) return;
      event.preventDefault();
      if (isChanged() && !window.confirm("Replace your script with this example? Your changes will be lost.")) {
        return;
      }
      fetch(link.dataset.exampleUrl, { headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.json();
        })
        .then(function (example) {
          setScript(view, textarea, example.script);
          setVersion(select, example.python_version);
          loaded(example.script);
          menu.open = false;
        })
        .catch(function () {
          window.location.href = link.href; // the server-rendered fallback
        });
    });
    // Close the menu on Escape or a click elsewhere, like a native menu.
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    menu.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  }

  function init() {
    var form = document.getElementById("run-form");
    if (!form) return;
    var textarea = form.querySelector("textarea[data-editor]");
    var select = form.querySelector('select[name="python_version"]');
    var view = textarea ? mountEditor(textarea) : null;
    // What the editor was last loaded with: the page's script, or an example picked since.
    var baseline = textarea ? textarea.defaultValue : "";
    if (textarea) {
      restoreDraft(form, view, textarea, select);
      var save = function () {
        saveDraft(form);
      };
      form.addEventListener("input", save);
      form.addEventListener("change", save);
      textarea.addEventListener("editor-change", save);
    }

    // Ctrl/Cmd+Enter anywhere in the form (the stdin box, the version select) runs too.
    form.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.defaultPrevented) {
        event.preventDefault();
        submitRun(form);
      }
    });

    // The shortcut only works with this script, so it is only mentioned when it runs.
    document.querySelectorAll("[data-shortcut]").forEach(function (el) {
      el.textContent = isMac ? "⌘ Enter" : "Ctrl+Enter";
      el.hidden = false;
    });
    document.querySelectorAll("[data-shortcut-hint], [data-editor-hint]").forEach(function (el) {
      el.hidden = false;
    });

    var menu = document.getElementById("examples-menu");
    if (menu && textarea) {
      wireExamples(
        menu,
        view,
        textarea,
        select,
        function () {
          return textarea.value !== baseline;
        },
        function (script) {
          baseline = script;
        }
      );
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
