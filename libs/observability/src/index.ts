// Public entry of @woodstream/observability.
export {};
