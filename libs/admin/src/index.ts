// Public entry of @woodstream/admin.
export {};
