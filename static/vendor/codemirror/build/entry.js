// The parts of CodeMirror 6 that static/js/editor.js uses, exposed as window.CM.
export { EditorView, basicSetup } from "codemirror";
export { EditorState, Compartment } from "@codemirror/state";
export { keymap } from "@codemirror/view";
export { indentWithTab } from "@codemirror/commands";
export { indentUnit } from "@codemirror/language";
export { python } from "@codemirror/lang-python";
export { oneDark } from "@codemirror/theme-one-dark";
