import { defineConfig } from "vite";

// The build goes into the Python package, so installing the bot needs no Node.js.
export default defineConfig({
  base: "./",
  build: {
    outDir: "../bot/miniapp/static",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
